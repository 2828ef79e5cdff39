#!/usr/bin/env bash
# Usage: scripts/with-test-services.sh CMD [ARGS...]
#
# Starts the throw-away test services (see scripts/test-services.sh), runs CMD with their variables
# in its environment, stops the services however CMD ends, and exits with CMD's status.
# With CI=true a missing or non-starting service fails the run (status 1) before CMD runs.
set -uo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEST_SERVICES_NO_AUTOSTART=1
# shellcheck source=scripts/test-services.sh
. "$here/test-services.sh" || exit 1
unset TEST_SERVICES_NO_AUTOSTART

_cleanup() {
    trap - EXIT INT TERM HUP
    test_services_stop
}
trap _cleanup EXIT
trap '_cleanup; exit 130' INT
trap '_cleanup; exit 143' TERM
trap '_cleanup; exit 129' HUP

if ! test_services_start "$$"; then
    echo "with-test-services: services are not available; not running: $*" >&2
    exit 1
fi

"$@"
status=$?
_cleanup
exit "$status"
