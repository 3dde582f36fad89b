# A Postfix node as Relayplane expects one: Postfix + sshd, nothing else. The control plane logs
# in as root with its key (RELAYPLANE_AUTHORIZED_KEY) and runs postconf/postmap/postfix, pinning
# this node's host key. Build: docker build -f docker/postfix-node.Dockerfile -t relayplane-postfix-node .
FROM debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
RUN echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections \
 && echo "postfix postfix/mailname string relay.invalid" | debconf-set-selections \
 && apt-get update -q \
 && apt-get install -y -q --no-install-recommends postfix openssh-server libsasl2-modules ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && rm -f /etc/ssh/ssh_host_*
COPY docker/postfix-node-entrypoint.sh /usr/local/sbin/postfix-node-entrypoint
RUN chmod 0755 /usr/local/sbin/postfix-node-entrypoint
# Host keys live in a volume so the pinned key survives a rebuild.
VOLUME ["/var/lib/postfix-node", "/var/spool/postfix"]
EXPOSE 25 22
HEALTHCHECK --interval=10s --timeout=3s CMD postfix status >/dev/null 2>&1 || exit 1
ENTRYPOINT ["/usr/local/sbin/postfix-node-entrypoint"]
