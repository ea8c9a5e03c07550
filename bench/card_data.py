"""Synthetic Mianzhou Pass cards for the card benchmarks: a CSV in the import format.

Person ``i`` gets a unique, valid resident ID (a Mianyang region code, a birth date
between 1940 and 2015, a sequence whose parity gives the sex) and card serial ``i + 1``.
About 2% of cards are lost, 1% cancelled, 0.5% frozen; the rest are active.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from card import card_number  # noqa: E402
from card.resident_id import check_character  # noqa: E402

# Mianyang's county-level codes (all valid for births since 1992).
REGIONS = ("510703", "510704", "510705", "510722", "510725", "510726", "510727", "510781")
FAMILY = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂兰华建国志红玉梅小云飞鹏辉浩宇轩涵琳欣怡"
STREETS = ("临园路", "剑南路", "长虹大道", "绵州大道", "涪城路", "游仙路", "安昌路", "花园路")
START = dt.date(1940, 1, 1)
DAYS = (dt.date(2015, 12, 31) - START).days


def person(i: int) -> dict[str, str]:
    rng = random.Random(i)
    region = REGIONS[i % len(REGIONS)]
    rest = i // len(REGIONS)
    birth = START + dt.timedelta(days=rest % DAYS)
    seq = rest // DAYS + 1  # unique with region and birth date
    sex_seq = seq * 2 - (1 if rng.random() < 0.5 else 0)  # odd: male
    first17 = f"{region}{birth:%Y%m%d}{sex_seq:03d}"
    roll = rng.random()
    status = (
        "lost"
        if roll < 0.02
        else "cancelled"
        if roll < 0.03
        else "frozen"
        if roll < 0.035
        else "active"
    )
    return {
        "card_no": card_number.make(i + 1),
        "resident_id": first17 + check_character(first17),
        "name": rng.choice(FAMILY) + "".join(rng.choices(GIVEN, k=rng.choice((1, 2)))),
        "gender": "male" if sex_seq % 2 else "female",
        "birth_date": birth.isoformat(),
        "phone": f"1{rng.choice('3578')}{rng.randrange(10**9):09d}",
        "address": f"四川省绵阳市{rng.choice(STREETS)}{rng.randrange(1, 999)}号",
        "status": status,
        "issued_at": f"{2010 + i % 15}-0{1 + i % 9}-1{i % 10}T09:00:00+08:00",
    }


def write_csv(path: Path, count: int, start: int = 0) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(person(0)))
        writer.writeheader()
        for i in range(start, start + count):
            writer.writerow(person(i))


if __name__ == "__main__":
    write_csv(Path(sys.argv[1]), int(sys.argv[2]))
