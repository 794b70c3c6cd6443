#!/usr/bin/env bash
# Build the centre's image and run it against a PostgreSQL container until its health check passes.
# Needs a Docker daemon (CI with Docker; not the test suite, which checks the Dockerfile and runs its
# entrypoint without Docker: tests/deploy/test_deploy.py). Cleans up what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=sscard-centre:check
net=sscard-check-$$
docker build -f deploy/centre/Dockerfile -t "$tag" .
work=$(mktemp -d)
trap 'docker rm -f sscard-check-db-$$ sscard-check-centre-$$ >/dev/null 2>&1 || true;
      docker network rm "$net" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
docker network create "$net" >/dev/null
docker run -d --name sscard-check-db-$$ --network "$net" -e POSTGRES_PASSWORD=check -e POSTGRES_USER=sscard \
  -e POSTGRES_DB=sscard postgres:15-bookworm >/dev/null
key=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
hash=$(printf %s "$key" | sha256sum | cut -d' ' -f1)
printf '[terminal.T0001]\nkey_sha256 = "%s"\ninstitution = "H11000301"\noperator = false\n' "$hash" > "$work/keys.toml"
chmod 644 "$work/keys.toml"
for _ in $(seq 30); do docker exec sscard-check-db-$$ pg_isready -U sscard >/dev/null 2>&1 && break; sleep 1; done
docker run -d --name sscard-check-centre-$$ --network "$net" -p 127.0.0.1::8700 \
  -e SSCARD_POSTGRES_DSN="host=sscard-check-db-$$ dbname=sscard user=sscard password=check" \
  -v "$work/keys.toml:/etc/sscard/terminal-keys.toml:ro" "$tag" >/dev/null
for _ in $(seq 60); do
  state=$(docker inspect -f '{{.State.Health.Status}}' sscard-check-centre-$$)
  [ "$state" = healthy ] && break
  [ "$state" = unhealthy ] && { docker logs sscard-check-centre-$$; exit 1; }
  sleep 2
done
[ "$state" = healthy ] || { docker logs sscard-check-centre-$$; echo "centre never became healthy" >&2; exit 1; }
port=$(docker port sscard-check-centre-$$ 8700 | head -1 | cut -d: -f2)
# an unknown person with a card number: the centre looks the person up (403 CARD_PROOF_MISMATCH, as for a wrong card)
curl -sS -H "X-Terminal-Key: $key" -H "X-Card-No: C00000000" "http://127.0.0.1:$port/v1/persons/nobody" -o /dev/null \
  -w '%{http_code}\n' | grep -q 403 || { echo "an authenticated request did not reach the store" >&2; exit 1; }
echo "centre image OK: healthy on PostgreSQL, authenticated requests answered"
