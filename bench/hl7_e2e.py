"""End to end: ORU^R01 with 10 OBX over MLLP to FHIR resources readable by search.

Starts a real ``hie mllp`` (listener plus mapping workers, as ``hie serve`` runs it) on a
fresh database, registers a lab sender, and streams N lab results (a full blood count:
10 NM OBX with the sender's local codes, which the shipped ConceptMap translates to
LOINC) from client connections as fast as the ACKs come back. It samples the inbox every
half second (received vs mapped) and prints:

* the ACK rate while streaming;
* the sustained mapping rate: messages mapped per second from the first receipt to the
  last mapping, and over the steady middle of the run (target >= 300/s);
* whether the backlog drained (every message mapped, none failed) and how long after
  the last ACK;
* a check through the exchange's own search that every Observation is findable by
  LOINC code.

    .venv/bin/python bench/hl7_e2e.py [--messages 3000] [--connections 2] [--db sqlite|postgresql]
        [--variant HIE_HL7_COMMIT_BATCH=1[,HIE_X_Y=V...] ...] [--baseline DIR]

Each ``--variant`` runs this tree once more with those settings (default: one run with
none), interleaved per database.

``--baseline DIR`` also runs the hie found in DIR (an extracted older commit, e.g.
``git archive <commit> | tar -x -C DIR``) in the same run, interleaved with this tree per
database, for A/B figures on a busy machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from _harness import ROOT, env_for, fresh_database, hie, machine, services_for, workdir

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"

# (local code, display, value, unit, range) for a full blood count.
PANEL = [
    ("WBC", "白细胞计数", "6.4", "10*9/L", "3.5-9.5"),
    ("RBC", "红细胞计数", "4.62", "10*12/L", "4.3-5.8"),
    ("HGB", "血红蛋白", "141", "g/L", "130-175"),
    ("HCT", "红细胞压积", "0.42", "L/L", "0.40-0.50"),
    ("PLT", "血小板计数", "233", "10*9/L", "125-350"),
    ("MCV", "平均红细胞体积", "91.2", "fL", "82-100"),
    ("MCH", "平均红细胞血红蛋白含量", "30.5", "pg", "27-34"),
    ("MCHC", "平均红细胞血红蛋白浓度", "335", "g/L", "316-354"),
    ("NEUT%", "中性粒细胞百分比", "58.1", "%", "40-75"),
    ("LYMPH%", "淋巴细胞百分比", "31.7", "%", "20-50"),
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛"]


def oru(i: int, patients: int) -> bytes:
    p = i % patients
    name = f"{SURNAMES[p % len(SURNAMES)]}^{GIVEN[p % len(GIVEN)]}{GIVEN[(p // 7) % len(GIVEN)]}"
    birth = f"19{50 + p % 50:02d}{1 + p % 12:02d}{1 + p % 28:02d}"
    sex = "MF"[p % 2]
    when = f"202611{1 + i % 27:02d}{8 + i % 10:02d}{i % 60:02d}00"
    segments = [
        f"MSH|^~\\&|LIS|MYSRMYY|HIE|MIANYANG|{when}||ORU^R01^ORU_R01|E2E{i:09d}|P|2.5.1|||AL|NE||UNICODE UTF-8",
        f"PID|1||MRN{p:07d}^^^MYSRMYY^MR||{name}||{birth}|{sex}|||涪城区临园路{p % 300}号^^绵阳市^四川省^621000^CHN",
        f"PV1|1|O|检验科^^^MYSRMYY||||||||||||||||V{i:09d}",
        f"ORC|RE|P{i:09d}^LIS|F{i:09d}^LIS||CM",
        f"OBR|1|P{i:09d}^LIS|F{i:09d}^LIS|CBC^血常规^L|||{when}|||||||||||||||{when}||HM|F",
    ]
    for n, (code, display, value, unit, ref) in enumerate(PANEL, start=1):
        # Results vary from message to message (+-5%), as a real feed's do.
        decimals = len(value.partition(".")[2])
        varied = f"{float(value) * (1 + ((i * 7 + n) % 11 - 5) / 100):.{decimals}f}"
        segments.append(f"OBX|{n}|NM|{code}^{display}^L||{varied}|{unit}|{ref}|N|||F|||{when}")
    return "\r".join(segments).encode("utf-8") + b"\r"


def _client(args: tuple[int, list[bytes]]) -> tuple[int, float, float]:
    port, payloads = args
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ok = 0
    buf = b""
    started = time.time()
    for payload in payloads:
        sock.sendall(SB + payload + EB + CR)
        while EB + CR not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed before the ACK")
            buf += chunk
        frame, buf = buf.split(EB + CR, 1)
        if b"MSA|AA|" in frame or b"MSA|CA|" in frame:
            ok += 1
    sock.close()
    return ok, started, time.time()


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("hie mllp exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("hie mllp did not listen")


def _instant(value: object) -> datetime:
    # SQLite hands back text for a raw SELECT.
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def counts(engine: sa.Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        rows = dict(
            conn.execute(sa.text("SELECT state, count(*) FROM hl7_inbox GROUP BY state")).all()
        )
    return sum(rows.values()), rows.get("mapped", 0), rows.get("failed", 0)


def searchable(env: dict[str, str], expected: int) -> str:
    """Count, through the exchange's search, the Observations coded LOINC 718-7 (HGB)."""
    from hie.context import RequestContext

    services = services_for(env)
    try:
        ctx = RequestContext.system(actor="bench-check")
        result = services.exchange.search(
            ctx, "Observation", [("code", "http://loinc.org|718-7"), ("_summary", "count")]
        )
        total = result.total
    finally:
        services.close()
    return f"{total} of {expected} haemoglobin Observations found by code=http://loinc.org|718-7"


def run(
    kind: str,
    n: int,
    connections: int,
    patients: int,
    tree: Path = ROOT,
    settings: dict[str, str] | None = None,
) -> dict[str, float]:
    """One run against the hie in ``tree`` (this checkout, or a baseline's)."""
    with workdir() as tmp:
        url = fresh_database(kind, tmp, name="hie_bench_hl7")
        env = env_for(url, tmp / "data", HIE_CONFIG_DIR=str(tree / "config"), **(settings or {}))
        if tree == ROOT:
            hie(env, "db", "upgrade")
            hie(env, "hl7", "sender", "add", "--app", "LIS", "--facility", "MYSRMYY",
                "--org", "Organization/mysrmyy")  # fmt: skip
        else:
            for args in (("db", "upgrade"), ("hl7", "sender", "add", "--app", "LIS",
                         "--facility", "MYSRMYY", "--org", "Organization/mysrmyy")):  # fmt: skip
                subprocess.run([sys.executable, "-m", "hie", *args], env=env, cwd=tree,
                               check=True, capture_output=True)  # fmt: skip
        port = int(env["HIE_MLLP_PORT"])
        log = (tmp / "mllp.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "hie", "mllp"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=tree)  # fmt: skip
        engine = sa.create_engine(url)
        try:
            wait_for_port(port, proc)
            payloads = [oru(i, patients) for i in range(n)]
            shares = [(port, payloads[k::connections]) for k in range(connections)]
            samples: list[tuple[float, int, int]] = []
            with multiprocessing.get_context("spawn").Pool(connections) as pool:
                pending = pool.map_async(_client, shares)
                while not pending.ready():
                    received, mapped, _ = counts(engine)
                    samples.append((time.time(), received, mapped))
                    pending.wait(0.5)
                results = pending.get()
            acked = sum(r[0] for r in results)
            first, last_ack = min(r[1] for r in results), max(r[2] for r in results)
            deadline = time.time() + 600
            while True:
                received, mapped, failed = counts(engine)
                samples.append((time.time(), received, mapped))
                if mapped + failed >= n or time.time() > deadline:
                    break
                time.sleep(0.5)
            with engine.connect() as conn:
                span = conn.execute(
                    sa.text("SELECT min(received_at), max(processed_at) FROM hl7_inbox")
                ).one()
            start_at, end_at = (_instant(v) for v in span)
            drained = (end_at - start_at).total_seconds()
            # The steady middle: mapping rate between 20% and 80% of messages mapped.
            lo = next(s for s in samples if s[2] >= 0.2 * n)
            hi = next(s for s in samples if s[2] >= 0.8 * n)
            steady = (hi[2] - lo[2]) / max(hi[0] - lo[0], 1e-9)
            check = searchable(env, n)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            engine.dispose()
            log.close()
        return {
            "acked": acked,
            "ack_rate": n / (last_ack - first),
            "mapped": mapped,
            "failed": failed,
            "e2e_rate": mapped / drained,
            "steady": steady,
            "drain_after_ack": end_at.timestamp() - last_ack,
            "check": check,  # type: ignore[dict-item]
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--variant", action="append", default=[], metavar="HIE_X_Y=V[,...]",
                        help="run this tree with these settings (repeatable)")  # fmt: skip
    parser.add_argument("--baseline", type=Path, help="also run the hie in this directory")
    args = parser.parse_args()
    settings = [
        dict(item.split("=", 1) for item in variant.split(",") if item)
        for variant in args.variant or [""]
    ]
    print(f"# machine: {machine()}")
    print(f"# ORU^R01, 10 NM OBX, {len(oru(0, 1))} bytes; {args.messages} messages over "
          f"{args.connections} connections, {args.patients} patients")  # fmt: skip
    variants: list[tuple[str, Path, dict[str, str]]] = [("this tree", ROOT, v) for v in settings]
    if args.baseline is not None:
        variants.insert(0, (f"baseline {args.baseline}", args.baseline.resolve(), {}))
    for kind in args.db or ["sqlite"]:
        for label, tree, extra in variants:
            print(f"# {kind}, {label} {' '.join(f'{k}={v}' for k, v in extra.items())}")
            print(f"# load average {os.getloadavg()[0]:.2f} at start")
            report(kind, run(kind, args.messages, args.connections, args.patients, tree, extra))


def report(kind: str, r: dict[str, float]) -> None:
    print(
        f"{kind}: ACKed {r['acked']:.0f} at {r['ack_rate']:.0f} msg/s; mapped {r['mapped']:.0f}, "
        f"failed {r['failed']:.0f}; end to end {r['e2e_rate']:.0f} msg/s "
        f"(steady middle {r['steady']:.0f} msg/s; target 300); backlog drained "
        f"{r['drain_after_ack']:.1f} s after the last ACK"
    )
    print(f"{kind}: {r['check']}")


if __name__ == "__main__":
    main()
