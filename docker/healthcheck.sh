#!/bin/bash
# The container's HEALTHCHECK: exit 0 while schild's /ready answers 200
# (listening, with a list loaded), 1 otherwise. bash's /dev/tcp keeps curl
# out of the image. SCHILD_ADMIN overrides the admin address.
set -u
addr="${SCHILD_ADMIN:-127.0.0.1:9153}"
exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}" || exit 1
printf 'GET /ready HTTP/1.0\r\nHost: schild\r\n\r\n' >&3
IFS= read -r -t 5 status <&3 || exit 1
case "$status" in
    "HTTP/1."?" 200 "*) exit 0 ;;
    *)
        body=""
        while IFS= read -r -t 5 line <&3; do body="$line"; done
        echo "schild not ready: ${body:-$status}"
        exit 1
        ;;
esac
