#!/bin/sh
# Makes the secrets deploy/compose.yaml and deploy/kubernetes run with:
#   <dir>/secrets/ca.pem, ca-key.pem   a CA for NATS (kept across runs)
#   <dir>/secrets/nats.pem, nats-key.pem
#                                      the NATS nodes' certificate, for
#                                      clients and routes (made anew each run)
#   <dir>/.env                         API key, encryption key, NATS
#                                      passwords (kept once written)
# <dir> is deploy/ unless given. Names the certificate holds: SB_NATS_HOSTS
# (comma-separated) or compose's and the Helm chart's. Needs openssl.
# TestNATSRoles (cmd/switchboard) runs it and the nodes with what it makes.
#
#   sh deploy/gen-secrets.sh
set -eu

dir=${1:-$(dirname "$0")}
out="$dir/secrets"
hosts=${SB_NATS_HOSTS:-nats-1,nats-2,nats-3,nats,nats.switchboard.svc,nats.switchboard.svc.cluster.local,*.nats-headless,*.nats-headless.switchboard.svc.cluster.local,localhost}

umask 077
mkdir -p "$out"
if [ ! -f "$out/ca.pem" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
		-subj "/CN=Switchboard NATS CA" -keyout "$out/ca-key.pem" -out "$out/ca.pem" 2>/dev/null
fi

san="IP:127.0.0.1"
for h in $(echo "$hosts" | tr ',' ' '); do
	san="$san,DNS:$h"
done
ext="$out/nats.ext"
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature\nbasicConstraints=CA:FALSE\n' "$san" >"$ext"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=nats" \
	-keyout "$out/nats-key.pem" -out "$out/nats.csr" 2>/dev/null
openssl x509 -req -in "$out/nats.csr" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" -CAcreateserial \
	-days 397 -extfile "$ext" -out "$out/nats.pem" 2>/dev/null
rm -f "$out/nats.csr" "$ext" "$out/ca.srl"
# Certificates are public; the containers' users must read them.
chmod 644 "$out/ca.pem" "$out/nats.pem"

if [ ! -f "$dir/.env" ]; then
	{
		echo "SWITCHBOARD_API_KEY=sk_$(openssl rand -hex 24)"
		echo "SWITCHBOARD_ENCRYPTION_KEY=$(openssl rand -base64 32)"
		echo "SB_NATS_REGISTRY_PASSWORD=$(openssl rand -hex 24)"
		echo "SB_NATS_WORKER_PASSWORD=$(openssl rand -hex 24)"
		echo "SB_NATS_PRODUCER_PASSWORD=$(openssl rand -hex 24)"
	} >"$dir/.env"
fi
echo "secrets in $out, keys and passwords in $dir/.env"
