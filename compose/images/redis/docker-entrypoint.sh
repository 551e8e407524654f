#!/bin/sh
# Entry point of the local Redis image, behaving like the official image's: `redis-server [args]` or
# bare `--option` arguments start the server as user redis with protected mode off, anything else runs.
set -eu

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi

if [ "$1" = "redis-server" ]; then
    case " $* " in
        *" --protected-mode "*) ;;
        # The official image compiles protected mode off; we say it on the command line instead.
        *) set -- "$@" --protected-mode no ;;
    esac
    if [ "$(id -u)" = "0" ]; then
        chown redis:redis /data 2>/dev/null || true
        exec setpriv --reuid=redis --regid=redis --init-groups "$@"
    fi
fi

exec "$@"
