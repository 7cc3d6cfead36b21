#!/usr/bin/env bash
# Install what the test suite needs from Debian: the lab's tools, nmap as an oracle, and the
# real daemons the service-detection lab starts inside its own namespaces.
# Debian's maintainer scripts would start each daemon on this host; a policy-rc.d that
# exits 101 forbids that while apt runs (an existing one is left as it is).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt-get update
apt-get install -y --no-install-recommends \
    iproute2 iptables nmap lsof libxml2-utils openssl \
    openssh-server nginx vsftpd exim4-daemon-light redis-server postgresql \
    dnsmasq-base snmpd memcached mosquitto dovecot-imapd dovecot-pop3d lighttpd \
    slapd ntpsec
