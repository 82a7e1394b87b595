#!/bin/sh
# The app's own database role: it owns its schema (public, in the app's database) and the tables in it, and nothing
# more (no superuser, no CREATEDB, no CREATEROLE). The superuser (POSTGRES_USER) is used only for this and for
# upgrades. Idempotent: it sets the role's password again and hands it any table the superuser still owns.
#
#   Run by the postgres image on an empty volume (docker-compose.yml mounts it in /docker-entrypoint-initdb.d/);
#   on an existing install, once:  docker compose exec db sh /docker-entrypoint-initdb.d/10-app-role.sh
#   Tested against this machine's PostgreSQL by tests/storage/test_migrations.py.
set -eu
: "${APP_DB_USER:?set APP_DB_USER}" "${APP_DB_PASSWORD:?set APP_DB_PASSWORD}" "${POSTGRES_DB:?}" "${POSTGRES_USER:?}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v app_user="$APP_DB_USER" -v app_password="$APP_DB_PASSWORD" -v db="$POSTGRES_DB" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'app_user')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_user') \gexec
ALTER ROLE :"app_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'app_password';
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"app_user";
ALTER SCHEMA public OWNER TO :"app_user";
-- An install from before this role: its tables (their sequences and indexes follow) and the rollup's function.
SELECT format('ALTER TABLE public.%I OWNER TO %I', tablename, :'app_user')
  FROM pg_tables WHERE schemaname = 'public' AND tableowner <> :'app_user' \gexec
SELECT format('ALTER FUNCTION public.%I() OWNER TO %I', proname, :'app_user')
  FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proowner <> :'app_user'::regrole \gexec
SQL
echo "role $APP_DB_USER ready: owner of $POSTGRES_DB's public schema, no superuser"
