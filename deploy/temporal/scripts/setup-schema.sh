#!/bin/sh
# One-shot job of docker-compose.yml (service temporal-schema, image temporalio/admin-tools): creates the
# PostgreSQL databases of the Temporal server and brings both schemas, persistence ("temporal") and
# visibility ("temporal_visibility"), to the version of the tool's image. As Temporal's own compose
# files do. Safe to run again on every `up`: an existing database is kept, `setup-schema -v 0.0` does not
# reset a database that already has a version, and `update-schema` applies only the missing versions.
# temporal-sql-tool reads the password from SQL_PASSWORD.
set -eu

schema_root=/etc/temporal/schema/postgresql/v12

sql_tool() {
    temporal-sql-tool --plugin "$DB" --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" -p "$DB_PORT" "$@"
}

create_database() {
    if output=$(sql_tool --db "$1" create 2>&1); then
        echo "database $1 created"
    elif echo "$output" | grep -q "already exists"; then
        echo "database $1 exists"
    else
        echo "$output" >&2
        exit 1
    fi
}

for pair in "temporal:temporal" "temporal_visibility:visibility"; do
    database=${pair%%:*}
    create_database "$database"
    sql_tool --db "$database" setup-schema -v 0.0
    sql_tool --db "$database" update-schema -d "$schema_root/${pair#*:}/versioned"
done
echo "Temporal schemas are up to date"
