"""REST endpoints of the points service (thin: validate, authorise, call one operation)."""
