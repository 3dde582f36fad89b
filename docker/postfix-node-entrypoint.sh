#!/bin/sh
# Starts a Relayplane-managed Postfix node: a minimal main.cf on first start (Relayplane owns the
# routing parameters it deploys; this only sets what is local to the node), Postfix in the
# background, sshd in the foreground.
set -eu

state=/var/lib/postfix-node
mkdir -p "$state/ssh" /run/sshd /root/.ssh
chmod 0700 "$state/ssh" /root/.ssh

# Host key generated once and kept in the volume: it is what the control plane pins.
[ -f "$state/ssh/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$state/ssh/ssh_host_ed25519_key"
echo "host key: $(ssh-keygen -lf "$state/ssh/ssh_host_ed25519_key.pub" | cut -d' ' -f2)"

if [ -n "${RELAYPLANE_AUTHORIZED_KEY:-}" ]; then
  printf '%s\n' "$RELAYPLANE_AUTHORIZED_KEY" > /root/.ssh/authorized_keys
  chmod 0600 /root/.ssh/authorized_keys
fi

cat > /etc/ssh/sshd_config.d/relayplane.conf <<CONF
HostKey $state/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthenticationMethods publickey
X11Forwarding no
CONF

if [ ! -f /etc/postfix/main.cf ]; then
  cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
fi
postconf -e \
  "myhostname=${POSTFIX_MYHOSTNAME:-$(hostname -f 2>/dev/null || hostname)}" \
  "mydestination=" \
  "inet_interfaces=all" \
  "mynetworks=${POSTFIX_MYNETWORKS:-127.0.0.0/8 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16}" \
  "smtpd_relay_restrictions=permit_mynetworks, reject" \
  "maillog_file=/var/log/postfix.log" \
  "smtp_tls_CAfile=/etc/ssl/certs/ca-certificates.crt"
# maillog_file needs the postlog service (Debian's master.cf has it); the deployer reads this file
# after each reload to catch fatal errors.
postfix check
postfix start
exec /usr/sbin/sshd -D -e
