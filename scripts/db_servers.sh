#!/usr/bin/env bash
# Install the database servers the SQL tests start and stop themselves: PostgreSQL and
# MariaDB (Debian packages). Idempotent: installs only what is missing, says what it does.
#
#   scripts/db_servers.sh          # as root, or a user with sudo
#
# It never starts a server: tests/db_servers.py runs throwaway ones in temp dirs.
set -euo pipefail

say() { echo "db_servers.sh: $*"; }

have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }
have_mariadb() {
    command -v mariadb-install-db >/dev/null && { command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]; }
}

packages=()
if have_postgres; then
    say "PostgreSQL found: $(ls -d /usr/lib/postgresql/*/bin/initdb | head -n1)"
else
    packages+=(postgresql)
fi
if have_mariadb; then
    say "MariaDB found: $(command -v mariadbd || echo /usr/sbin/mariadbd)"
else
    packages+=(mariadb-server)
fi

if [ ${#packages[@]} -eq 0 ]; then
    say "nothing to install"
    exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then
        sudo_cmd=(sudo)
    else
        say "error: need root (or sudo) to install ${packages[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
say "running: apt-get update"
"${sudo_cmd[@]}" apt-get update -qq
say "running: apt-get install -y --no-install-recommends ${packages[*]}"
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"

have_postgres || { say "error: initdb still missing after installing postgresql" >&2; exit 1; }
have_mariadb || { say "error: mariadbd still missing after installing mariadb-server" >&2; exit 1; }
say "installed ${packages[*]}"
