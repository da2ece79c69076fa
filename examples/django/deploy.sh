#!/usr/bin/env bash
# The jobd step of a deploy: run it once the new release is in place (`current`
# points at it) and before the old one is removed. It validates the new jobfile,
# shows what changes, and reloads jobd, failing the deploy on any error. Running
# jobs are not disturbed; on a bad jobfile jobd keeps running the old one.
#
#   JOBFILE=/srv/myapp/current/jobd.yaml ./deploy.sh
set -euo pipefail

JOBFILE=${JOBFILE:-/srv/myapp/current/jobd.yaml}
ENVIRONMENT=${JOBD_ENVIRONMENT:-production}   # the -e that jobd-myapp.service runs with
UNIT=${JOBD_UNIT:-jobd-myapp}

fail() { echo "deploy: $*" >&2; exit 1; }

# 1. Validate, as jobd will read it (errors name the file, line and column), and, with
#    --strict, refuse what this host lacks: a program that does not exist (no .venv
#    yet, `uv` not in PATH), a missing workdir, an unknown user or group. Run it as
#    the user jobd runs as, so that PATH and permissions are the service's.
jobd check -c "$JOBFILE" -e "$ENVIRONMENT" --strict >/dev/null \
    || fail "$JOBFILE is invalid or names what this host lacks (see above); jobd keeps the running jobfile"

# 2. Show what the reload will change (jobs added, removed, changed). jobctl needs
#    the socket's user (or socket_group:); exit 3 means jobd is not running yet.
echo "jobd: changes in this deploy:"
status=0
jobctl -c "$JOBFILE" reload --dry-run || status=$?
case $status in
    0) ;;
    3) echo "  (jobd is not running: nothing to compare)" ;;
    *) fail "jobd would refuse $JOBFILE (see above)" ;;
esac

# 3. Apply. Both ways wait for jobd's answer and fail on a refused jobfile.
if command -v systemctl >/dev/null && systemctl cat "$UNIT.service" >/dev/null 2>&1; then
    # Starts jobd if it is not running; never restarts a running one.
    sudo systemctl reload-or-restart "$UNIT" || fail "systemctl reload $UNIT failed: journalctl -u $UNIT"
else
    jobctl -c "$JOBFILE" reload || fail "jobd refused $JOBFILE, or is not running"
fi
echo "jobd: reloaded $JOBFILE"
