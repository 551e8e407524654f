#!/bin/sh
# Entry point of the SSH test host: installs the deploying user's public key, makes host keys if
# the image has none, then runs sshd in the foreground.
set -eu

if [ -n "${AUTHORIZED_KEY:-}" ]; then
    install -d -m 0700 -o deploy -g deploy /home/deploy/.ssh
    printf '%s\n' "$AUTHORIZED_KEY" > /home/deploy/.ssh/authorized_keys
    chown deploy:deploy /home/deploy/.ssh/authorized_keys
    chmod 0600 /home/deploy/.ssh/authorized_keys
fi
ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1 || ssh-keygen -A
exec "$@"
