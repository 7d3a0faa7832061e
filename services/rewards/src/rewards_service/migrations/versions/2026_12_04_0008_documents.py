"""rewards documents: templates, honour certificates and thank-you letters

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "document_templates",
        sa.Column("template_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("signature", sa.String(length=200), nullable=False),
        sa.Column("closing", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.CheckConstraint(
            "kind IN ('certificate', 'letter')", name=op.f("ck_document_templates_known_kind")
        ),
        sa.PrimaryKeyConstraint("template_id", "version", name=op.f("pk_document_templates")),
    )
    op.create_table(
        "document_recipients",
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("member_name", sa.String(length=300), nullable=True),
        sa.Column("company", sa.String(length=300), nullable=True),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_document_recipients")),
    )
    op.create_table(
        "documents",
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("template_id", sa.String(length=36), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("program_id", sa.String(length=36), nullable=True),
        sa.Column("program_version", sa.Integer(), nullable=True),
        sa.Column("measure_id", sa.String(length=64), nullable=True),
        sa.Column("cycle", sa.String(length=16), nullable=True),
        sa.Column("fields", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("code", sa.String(length=19), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("dedupe", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("issued_by", sa.String(length=128), nullable=False),
        sa.Column("issued_at", TIME, nullable=False),
        sa.Column("status_changed_at", TIME, nullable=False),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.Column("rendered_at", TIME, nullable=True),
        sa.CheckConstraint("kind IN ('certificate', 'letter')", name=op.f("ck_documents_known_kind")),
        sa.CheckConstraint("status IN ('issued', 'revoked')", name=op.f("ck_documents_known_status")),
        sa.CheckConstraint(
            "(kind = 'certificate') = (code IS NOT NULL)", name=op.f("ck_documents_certificates_have_codes")
        ),
        sa.ForeignKeyConstraint(
            ["template_id", "template_version"],
            ["document_templates.template_id", "document_templates.version"],
            name=op.f("fk_documents_template_id_document_templates"),
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_documents_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("document_id", name=op.f("pk_documents")),
        sa.UniqueConstraint("code", name=op.f("uq_documents_code")),
        sa.UniqueConstraint("dedupe", name=op.f("uq_documents_dedupe")),
    )
    op.create_index("ix_documents_member", "documents", ["member_id", "issued_at"], unique=False)
    op.create_index(
        "ix_documents_unrendered",
        "documents",
        ["issued_at"],
        unique=False,
        postgresql_where=sa.text("rendered_at IS NULL"),
    )
    op.create_table(
        "document_files",
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("rendered_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.document_id"], name=op.f("fk_document_files_document_id_documents")
        ),
        sa.PrimaryKeyConstraint("document_id", name=op.f("pk_document_files")),
    )


def downgrade() -> None:
    op.drop_table("document_files")
    op.drop_index(
        "ix_documents_unrendered", table_name="documents", postgresql_where=sa.text("rendered_at IS NULL")
    )
    op.drop_index("ix_documents_member", table_name="documents")
    op.drop_table("documents")
    op.drop_table("document_recipients")
    op.drop_table("document_templates")
