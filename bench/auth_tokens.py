"""Token grants: SMART Backend Services requests per second through `hie serve`.

Each request carries a fresh ES384 assertion (signed beforehand, so the client's signing
cost is not counted); the server verifies it, stores its jti (the durable replay check),
audits the grant and signs an EdDSA access token. Also: the cost of one scrypt password
hash at the default parameters, which bounds sign-ins per core.

    .venv/bin/python bench/auth_tokens.py --db sqlite --clients 8 --requests 2000
"""

from __future__ import annotations

import argparse
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import jwt
import requests
from _harness import env_for, fresh_database, hie, machine, serving, workdir
from cryptography.hazmat.primitives import serialization

from hie.auth.assertions import CLIENT_ASSERTION_TYPE
from hie.auth.passwords import PasswordHasher


def scrypt_ms(rounds: int = 5) -> float:
    hasher = PasswordHasher()
    start = time.perf_counter()
    for _ in range(rounds):
        hasher.hash("correct horse battery")
    return (time.perf_counter() - start) / rounds * 1000


def run(db: str, clients: int, total: int) -> None:
    with workdir() as work:
        env = env_for(fresh_database(db, work), work / "var")
        with serving(env) as fhir:
            base = fhir.removesuffix("/fhir")
            pem = work / "bench.pem"
            hie(env, "client", "add", "bench", "--org", "Organization/bench",
                "--scope", "system/*.rs", "--generate-key", str(pem))  # fmt: skip
            key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
            url = base + "/auth/token"
            now = int(time.time())
            claims = {"iss": "bench", "sub": "bench", "aud": url, "exp": now + 280, "iat": now}
            assertions = [
                jwt.encode({**claims, "jti": uuid.uuid4().hex}, key, algorithm="ES384")  # type: ignore[arg-type]
                for _ in range(total)
            ]
            latencies: list[float] = []
            session = requests.Session()

            def grant(assertion: str) -> None:
                form = {
                    "grant_type": "client_credentials",
                    "client_assertion_type": CLIENT_ASSERTION_TYPE,
                    "client_assertion": assertion,
                    "scope": "system/Patient.rs",
                }
                t0 = time.perf_counter()
                response = session.post(url, data=form, timeout=30)
                latencies.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    raise RuntimeError(response.text)

            start = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(grant, assertions))
            elapsed = time.perf_counter() - start
            latencies.sort()
            p50 = latencies[len(latencies) // 2] * 1000
            p99 = latencies[int(len(latencies) * 0.99)] * 1000
            print(
                f"{db}: {total} grants, {clients} clients: {total / elapsed:,.0f} tokens/s, "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    print(machine())
    print(f"scrypt (n=2^15, r=8, p=1): {scrypt_ms():.0f} ms per hash")
    run(args.db, args.clients, args.requests)


if __name__ == "__main__":
    main()
