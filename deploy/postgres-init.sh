#!/usr/bin/env bash
# One database and one login role per service (a service never sees another's tables).
#
# Mounted into the postgres image as /docker-entrypoint-initdb.d/10-service-databases.sh, so it runs
# once, when the data volume is empty. It reads each role's password from the environment
# (<SERVICE>_DB_PASSWORD); the services connect as that role, and their migrations run as the
# database owner. On an existing volume, run the same statements by hand for a new service.
set -eo pipefail

create_service_database() {
    local name="$1" password="$2"
    if [[ -z "$password" ]]; then
        echo "postgres-init: no password for the '$name' role (set ${name^^}_DB_PASSWORD)" >&2
        exit 1
    fi
    # psql substitutes :"name" (an identifier) and :'password' (a literal) safely.
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
        -v name="$name" -v password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"name" TO :"name";
SQL
    echo "postgres-init: database and role '$name' created"
}

create_service_database points "${POINTS_DB_PASSWORD:-}"
create_service_database tiers "${TIERS_DB_PASSWORD:-}"
create_service_database rewards "${REWARDS_DB_PASSWORD:-}"
# Not built yet; uncomment with the service (and pass its password to the postgres container):
# create_service_database feedback "${FEEDBACK_DB_PASSWORD:-}"
