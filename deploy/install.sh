#!/bin/sh
# Install uptimewatch as a systemd service:
#   /opt/uptimewatch                      a private virtualenv holding uptimewatch and its dependencies
#   /opt/uptimewatch/share/uptimewatch    Prometheus rules, Grafana dashboards, Alertmanager example
#   /etc/uptimewatch/config.yaml          the configuration (created from the example when absent,
#                                         never overwritten), mode 0640, group uptimewatch-config
#   /etc/uptimewatch/secrets/             SNMPv3 keys and other secrets read by the config
#   /etc/systemd/system/uptimewatch.service
#   /etc/systemd/system/uptimewatch@.service, uptimewatch-nats.service   for a cluster (docs/cluster.md);
#                                         installed, never enabled: `systemctl enable --now uptimewatch@n1`
#
# Usage: deploy/install.sh [--root DIR] [--from WHEEL|SOURCE_DIR] [--python PYTHON]
#   --root DIR    install under DIR instead of / (also: DESTDIR=DIR); nothing outside DIR is touched,
#                 systemctl is not called. For packaging and tests: the virtualenv's scripts then
#                 name DIR/opt/uptimewatch/bin/python, so a staged tree is not relocatable.
#   --from PATH   a built wheel or a source checkout (default: the checkout this script lives in)
#   --python PY   the interpreter for the virtualenv (default: python3, 3.11 or later)
# pip honours its usual environment (PIP_INDEX_URL, PIP_NO_INDEX, PIP_FIND_LINKS...) for mirrors.
# Running it again upgrades uptimewatch in place and keeps the configuration.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=${DESTDIR:-}
from=$(dirname "$here")
python=python3
group=uptimewatch-config

usage() { sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
    case $1 in
        --root) [ $# -ge 2 ] || usage; root=$2; shift 2 ;;
        --root=*) root=${1#--root=}; shift ;;
        --from) [ $# -ge 2 ] || usage; from=$2; shift 2 ;;
        --from=*) from=${1#--from=}; shift ;;
        --python) [ $# -ge 2 ] || usage; python=$2; shift 2 ;;
        --python=*) python=${1#--python=}; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown argument: $1" >&2; usage ;;
    esac
done

if [ -n "$root" ]; then
    mkdir -p "$root"
    root=$(cd "$root" && pwd)
elif [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (or pass --root DIR to stage the files elsewhere)" >&2
    exit 1
fi
case $from in /*) ;; *) from=$(pwd)/$from ;; esac
[ -e "$from" ] || { echo "install.sh: $from does not exist" >&2; exit 1; }

prefix=$root/opt/uptimewatch
etc=$root/etc/uptimewatch
say() { printf '%s\n' "$*"; }

# 1. The group that may read the config. The service runs as a dynamic user (DynamicUser=yes), which
#    does not exist until the service starts, so file ownership goes through this static group.
install -d -m 0755 "$root/etc" "$root/usr/lib/sysusers.d"
install -m 0644 "$here/systemd/uptimewatch.sysusers" "$root/usr/lib/sysusers.d/uptimewatch.conf"
if command -v systemd-sysusers >/dev/null 2>&1; then
    if [ -n "$root" ]; then
        systemd-sysusers --root="$root" "$root/usr/lib/sysusers.d/uptimewatch.conf"
    else
        systemd-sysusers /usr/lib/sysusers.d/uptimewatch.conf
    fi
elif [ -z "$root" ]; then
    getent group "$group" >/dev/null || groupadd --system "$group"
fi
# Numeric, read from the target's own group file: the host's may not know a staged root's groups.
gid=$(awk -F: -v g="$group" '$1 == g { print $3 }' "$root/etc/group" 2>/dev/null || true)
set_group() {
    if [ -n "$gid" ] && [ "$(id -u)" = 0 ]; then chgrp "$gid" "$@"; else
        say "warning: could not give $* to group $group; the service will not be able to read it" >&2
    fi
}

# 2. The virtualenv. Upgrading in place keeps a running daemon's files valid until its restart.
if [ ! -x "$prefix/bin/python" ]; then
    say "creating virtualenv $prefix"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        echo "install.sh: $python is older than 3.11" >&2; exit 1; }
    "$python" -m venv "$prefix"
fi
say "installing uptimewatch from $from"
"$prefix/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$from"
"$prefix/bin/uptimewatch" --version

# 3. Shared files: rules, dashboards and examples the operator copies from, refreshed every time.
share=$prefix/share/uptimewatch
install -d -m 0755 "$share" "$prefix/share/doc"
for d in prometheus grafana alertmanager systemd nats; do
    rm -rf "${share:?}/$d"
    cp -R "$here/$d" "$share/$d"
done
[ -f "$here/../config.example.yaml" ] && install -m 0644 "$here/../config.example.yaml" "$share/config.example.yaml"
for doc in deploy cluster; do
    [ -f "$here/../docs/$doc.md" ] && install -m 0644 "$here/../docs/$doc.md" "$prefix/share/doc/$doc.md"
done

# 4. Configuration: created once, never overwritten; secrets readable by the service's group only.
install -d -m 0750 "$etc" "$etc/secrets"
set_group "$etc" "$etc/secrets"
if [ -e "$etc/config.yaml" ]; then
    say "keeping existing $etc/config.yaml"
else
    [ -f "$share/config.example.yaml" ] || { echo "install.sh: no config.example.yaml to start from" >&2; exit 1; }
    install -m 0640 "$share/config.example.yaml" "$etc/config.yaml"
    set_group "$etc/config.yaml"
    say "created $etc/config.yaml from the example: edit it, then check it with"
    say "  $prefix/bin/uptimewatch check-config $etc/config.yaml"
fi

# 5. The unit. Ours to replace; local changes belong in `systemctl edit uptimewatch` drop-ins.
install -d -m 0755 "$root/etc/systemd/system"
install -m 0644 "$here/systemd/uptimewatch.service" "$root/etc/systemd/system/uptimewatch.service"
install -m 0644 "$here/systemd/uptimewatch@.service" "$root/etc/systemd/system/uptimewatch@.service"
install -m 0644 "$here/nats/uptimewatch-nats.service" "$root/etc/systemd/system/uptimewatch-nats.service"

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    say "installed. Start it with:  systemctl enable --now uptimewatch"
    say "reload the config with:    systemctl reload uptimewatch"
else
    say "installed under ${root:-/}"
fi
