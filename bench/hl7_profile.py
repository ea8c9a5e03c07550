"""Profile the mapping worker in process: N ORU^R01 (10 NM OBX) through a real exchange.

Stores the messages in the inbox through intake (as the listener does), then times and
profiles ``Worker.drain`` alone: parse, map, the exchange's transaction(s), the inbox
update. Prints ms per message and the largest cumulative entries of the profile.

    .venv/bin/python bench/hl7_profile.py [--messages 200] [--db sqlite|postgresql] [--batch N]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from dataclasses import replace

from _harness import env_for, fresh_database, hie, machine, workdir
from hl7_e2e import oru


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--batch", type=int, default=0, help="messages per commit (0: default)")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--sort", default="cumulative", help="pstats sort key (tottime...)")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    print(f"# machine: {machine()}")
    with workdir() as tmp:
        url = fresh_database(args.db, tmp, name="hie_bench_hl7prof")
        env = env_for(url, tmp / "data")
        hie(env, "db", "upgrade")
        hie(env, "hl7", "sender", "add", "--app", "LIS", "--facility", "MYSRMYY",
            "--org", "Organization/mysrmyy")  # fmt: skip
        os.environ.update(env)
        from adapters.hl7v2.ack import AckBuilder
        from adapters.hl7v2.config import Hl7Config
        from adapters.hl7v2.inbox import Inbox
        from adapters.hl7v2.intake import Intake, IntakeConfig
        from adapters.hl7v2.senders import SenderRegistry
        from adapters.hl7v2.worker import Worker
        from hie.cli.environment import CliEnvironment
        from terminology.conceptmaps import load_conceptmaps

        cli = CliEnvironment()
        config = Hl7Config.from_settings(cli.settings)
        inbox = Inbox(cli.engine(), keep_connection=True, raw_cipher=cli.raw_cipher())
        registry = SenderRegistry(cli.engine())
        intake = Intake(registry, AckBuilder(), IntakeConfig(False, config.defaults, 1 << 24))
        # Warm up (imports, model classes, first-use caches) on messages not measured.
        warm = 20
        for i in range(warm + args.messages):
            intake.receive(oru(i, args.patients), inbox, "bench", "mllp")
        worker_config = config.worker_config()
        if args.batch:
            worker_config = replace(worker_config, commit_batch=args.batch)
        worker = Worker(inbox, registry, cli.exchange(), maps=load_conceptmaps(),
                        config=replace(worker_config, batch=warm))  # fmt: skip
        worker.run_once()
        worker.config = worker_config
        # CPU time: on a shared machine wall time mostly measures the other jobs.
        profiler = cProfile.Profile(time.process_time)
        started = time.perf_counter()
        cpu = time.process_time()
        if not args.no_profile:
            profiler.enable()
        done = worker.drain(timeout=600)
        profiler.disable()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        counts = inbox.counts()
        print(f"{args.db}: {done} messages in {elapsed:.2f} s: {1000 * elapsed / done:.1f} ms "
              f"per message, {1000 * cpu / done:.1f} ms CPU in this process "
              f"({'profiled' if not args.no_profile else 'not profiled'}); "
              f"inbox {counts}")  # fmt: skip
        if not args.no_profile:
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats(args.sort).print_stats(args.top)
            print(out.getvalue())
        inbox.close()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
