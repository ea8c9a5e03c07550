"""A synthetic Mianyang population and the hospital records of it, corrupted realistically.

People live in households (a shared surname for the children, a shared address, and the
children often give a parent's phone number); some are twins. Each person may hold a
Mianzhou Pass card (clean data from the card service) and has records at several hospitals,
each hospital with its own MRN. Hospital records are corrupted the way hospital data is:

* typos in Hanzi names and homophone characters (张伟 for 张玮),
* pinyin-only names from systems without Chinese input (one hospital's old system, and
  an occasional clerk elsewhere): "ZHANG WEI", "ZHANGWEI", "Zhang Wei",
* day and month swapped, digit typos in birth dates,
* missing, changed or mistyped phone numbers, moved or abbreviated addresses,
* a missing or mistyped resident ID number.

Resident ID numbers use real Mianyang region codes, including the historical ones a person
keeps for life (512801 绵阳市 before 1985, 510702 市中区 1985-1992, 510724 安县 until 2016).

Run ``python bench/identity_population.py --people 1000 --out people.jsonl`` to write one
JSON record per line; bench/identity_accuracy.py imports :func:`generate` directly.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pypinyin import lazy_pinyin

from card.resident_id import check_character
from hie.identity import CARD_SOURCE, Identifier, PersonName, PersonRecord
from hie.identity.names import SURNAME_READINGS

# Approximate shares (percent) of the national population, 2020 census order; 曾 and a few
# surnames with special readings are included on purpose.
SURNAMES: dict[str, float] = {
    "王": 7.1, "李": 7.0, "张": 6.5, "刘": 5.3, "陈": 4.6, "杨": 3.2, "黄": 2.2, "赵": 2.1,
    "吴": 2.0, "周": 1.9, "徐": 1.4, "孙": 1.4, "马": 1.3, "朱": 1.2, "胡": 1.1, "郭": 1.1,
    "何": 1.0, "林": 1.0, "罗": 0.9, "高": 0.9, "郑": 0.8, "梁": 0.8, "谢": 0.8, "宋": 0.7,
    "唐": 0.7, "许": 0.7, "韩": 0.6, "冯": 0.6, "邓": 0.6, "曹": 0.6, "彭": 0.6, "曾": 0.6,
    "肖": 0.6, "田": 0.5, "董": 0.5, "袁": 0.5, "潘": 0.5, "于": 0.5, "蒋": 0.5, "蔡": 0.5,
    "余": 0.5, "杜": 0.5, "叶": 0.5, "程": 0.5, "苏": 0.4, "魏": 0.4, "吕": 0.4, "丁": 0.4,
    "任": 0.4, "沈": 0.4, "姚": 0.4, "卢": 0.4, "姜": 0.4, "崔": 0.3, "钟": 0.3, "谭": 0.3,
    "陆": 0.3, "汪": 0.3, "范": 0.3, "金": 0.3, "石": 0.3, "廖": 0.3, "贾": 0.3, "夏": 0.3,
    "付": 0.3, "方": 0.3, "邹": 0.3, "熊": 0.2, "白": 0.2, "孟": 0.2, "秦": 0.2, "邱": 0.2,
    "侯": 0.2, "江": 0.2, "尹": 0.2, "薛": 0.2, "闫": 0.2, "段": 0.2, "雷": 0.2, "龙": 0.2,
    "单": 0.05, "解": 0.05, "仇": 0.03, "查": 0.03, "翟": 0.05, "缪": 0.03, "覃": 0.05,
    "欧阳": 0.05, "司马": 0.01, "诸葛": 0.01, "上官": 0.01,
}  # fmt: skip

MALE_CHARS = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林洋峰建国志文博毅成亮松"
FEMALE_CHARS = "芳娜敏静丽艳娟霞秀玲桂英燕萍红婷雪琳丹玉慧莉倩颖梅琴蓉洁佳欣悦怡晶淑珍露瑶雨"
# Characters a clerk may type for another with the same toneless pinyin.
HOMOPHONES = [
    "伟玮炜维薇", "张章", "丽莉俐利", "静晶靖婧", "明铭鸣", "华桦骅", "军君钧", "杰洁婕",
    "林琳霖淋", "芳方坊", "红宏虹鸿", "平萍苹", "英瑛莹", "燕艳彦雁", "婷庭亭", "敏珉闽",
    "磊蕾垒", "涛韬焘", "斌彬滨", "鹏朋彭", "飞菲非霏", "宇雨羽语禹", "浩昊皓", "俊骏峻",
    "欣馨新心鑫", "玉钰煜", "慧惠蕙辉", "梅玫媚", "琴芹勤", "洋阳杨扬", "峰锋丰枫", "霞夏",
    "刘柳", "陈晨辰", "王汪", "李黎理", "黄皇凰", "吴武伍", "周舟洲", "朱珠诸", "胡湖",
    "凯恺铠", "超朝", "健建剑", "帅率", "旭序叙", "宁凝", "龙隆", "国果", "志智致", "文雯闻",
    "博波柏", "成诚程城", "亮靓", "娜纳", "丹单", "秀绣", "珍真贞", "露路璐", "瑶遥尧",
]  # fmt: skip
TYPO_CHARS = "大小中天生春秋正永长金云光德玲兰香凤素桂荣"

# (code, district name, share of population in ‰, historical codes with the last year valid)
DISTRICTS = [
    ("510703", "涪城区", 190, [("512801", 1984), ("510702", 1991)]),
    ("510704", "游仙区", 100, [("512801", 1984), ("510702", 1991)]),
    ("510705", "安州区", 70, [("512823", 1984), ("510724", 2016)]),
    ("510722", "三台县", 200, [("512833", 1984)]),
    ("510723", "盐亭县", 80, [("512837", 1984)]),
    ("510725", "梓潼县", 55, [("512825", 1984)]),
    ("510726", "北川羌族自治县", 40, [("512831", 1984)]),
    ("510727", "平武县", 30, [("512830", 1984)]),
    ("510781", "江油市", 155, [("512824", 1984)]),
]
STREETS = [
    "临园路", "长虹大道", "剑南路", "涪城路", "安昌路", "东津路", "科创园路", "游仙路",
    "芙蓉路", "绵兴路", "花园路", "春天街", "御营街", "滨江路", "九洲大道", "高水路",
    "南河路", "金家林街", "普明路", "警钟街", "红星街", "富乐路", "三江路", "飞云大道",
]  # fmt: skip
HOSPITALS = [
    ("mcch", "绵阳市中心医院", False),
    ("my3h", "绵阳市第三人民医院", False),
    ("my404", "四川绵阳四〇四医院", False),
    ("jyph", "江油市人民医院", False),
    ("stph", "三台县人民医院", False),
    ("mytcm", "绵阳市中医医院", True),  # an old system without Chinese input
]


@dataclass(frozen=True, slots=True)
class Person:
    person_id: str
    family: str
    given: str
    birth_date: dt.date
    gender: str
    resident_id: str
    phone: str
    district: str
    address: str
    household: int


@dataclass(frozen=True, slots=True)
class Rates:
    card: float = 0.6
    records_mean: float = 1.6
    pinyin_only: float = 0.06  # at hospitals with Chinese input
    name_typo: float = 0.02
    homophone: float = 0.05
    dob_swap: float = 0.02
    dob_typo: float = 0.02
    phone_missing: float = 0.2
    phone_changed: float = 0.1
    phone_typo: float = 0.02
    moved: float = 0.15
    address_short: float = 0.1
    id_missing: float = 0.3
    id_typo: float = 0.02
    gender_missing: float = 0.02
    twins: float = 0.02


class Generator:
    def __init__(self, seed: int, rates: Rates, today: dt.date) -> None:
        self.rng = random.Random(seed)
        self.rates = rates
        self.today = today
        self._serial: dict[tuple[str, str], int] = {}
        self._count = 0
        self._mrn: dict[str, int] = {}
        self._surnames = list(SURNAMES)
        self._surname_weights = list(SURNAMES.values())
        self._homophone = {ch: group for group in HOMOPHONES for ch in group}

    # --- people -------------------------------------------------------------------------

    def people(self, n: int) -> list[Person]:
        out: list[Person] = []
        household = 0
        while len(out) < n:
            household += 1
            out.extend(self._household(household, n - len(out)))
        return out

    def _household(self, hid: int, room: int) -> list[Person]:
        rng = self.rng
        code, district, _, _ = self._district()
        address = self._address(district)
        phone = self._phone()
        surname = self._surname()
        parent_birth = self._birth(18, 90)
        members = [
            self._person(
                hid, surname, parent_birth, rng.choice("MF"), code, district, address, phone
            )
        ]
        if room > 1 and rng.random() < 0.6:  # a spouse, keeping their own surname
            spouse_birth = parent_birth + dt.timedelta(days=rng.randint(-1500, 1500))
            spouse_birth = min(spouse_birth, self.today - dt.timedelta(days=18 * 365))
            members.append(
                self._person(
                    hid,
                    self._surname(),
                    spouse_birth,
                    "F" if members[0].gender == "male" else "M",
                    code,
                    district,
                    address,
                    self._phone(),
                )
            )
        age = (self.today - parent_birth).days // 365
        if age > 22 and room > len(members) and rng.random() < 0.6:
            kids = rng.choice([1, 1, 2])
            for _ in range(min(kids, room - len(members))):
                born = parent_birth + dt.timedelta(days=rng.randint(20 * 365, min(age, 40) * 365))
                born = min(born, self.today)
                twin = rng.random() < self.rates.twins and room - len(members) >= 2
                for _ in range(2 if twin else 1):
                    # children under 16 often give a parent's phone
                    kid_phone = phone if (self.today - born).days < 16 * 365 else self._phone()
                    members.append(
                        self._person(
                            hid, surname, born, rng.choice("MF"), code, district, address, kid_phone
                        )
                    )
        return members[:room]

    def _person(
        self,
        hid: int,
        surname: str,
        born: dt.date,
        sex: str,
        code: str,
        district: str,
        address: str,
        phone: str,
    ) -> Person:
        given = self._given(sex)
        region = self._region_code(code, born)
        key = (region, born.strftime("%Y%m%d"))
        serial = self._serial.get(key, self.rng.randint(0, 400))
        while (serial % 2 == 1) != (sex == "M"):
            serial += 1
        self._serial[key] = serial + 1
        first17 = f"{region}{born:%Y%m%d}{serial % 1000:03d}"
        rid = first17 + check_character(first17)
        self._count += 1
        pid = f"P{self._count:07d}"
        return Person(
            pid,
            surname,
            given,
            born,
            "male" if sex == "M" else "female",
            rid,
            phone,
            district,
            address,
            hid,
        )

    def _district(self) -> tuple[str, str, int, list[tuple[str, int]]]:
        return self.rng.choices(DISTRICTS, weights=[d[2] for d in DISTRICTS])[0]

    def _region_code(self, code: str, born: dt.date) -> str:
        # numbers issued before a code changed keep the old code for life
        for c, _name, _, history in DISTRICTS:
            if c != code:
                continue
            first_id_year = born.year + (16 if born.year < 1990 else 0)
            for old, last in history:
                if first_id_year <= last and self.rng.random() < 0.9:
                    return old
        return code

    def _surname(self) -> str:
        return self.rng.choices(self._surnames, weights=self._surname_weights)[0]

    def _given(self, sex: str) -> str:
        pool = MALE_CHARS if sex == "M" else FEMALE_CHARS
        length = 1 if self.rng.random() < 0.3 else 2
        return "".join(self.rng.choice(pool) for _ in range(length))

    def _birth(self, min_age: int, max_age: int) -> dt.date:
        days = self.rng.randint(min_age * 365, max_age * 365)
        return self.today - dt.timedelta(days=days)

    def _phone(self) -> str:
        prefix = self.rng.choice(
            [
                "138",
                "139",
                "135",
                "136",
                "150",
                "151",
                "158",
                "159",
                "180",
                "181",
                "187",
                "188",
                "133",
                "153",
                "177",
                "199",
                "166",
            ]
        )
        return prefix + f"{self.rng.randint(0, 99_999_999):08d}"

    def _address(self, district: str) -> str:
        rng = self.rng
        street, number = rng.choice(STREETS), rng.randint(1, 300)
        building, unit, room = rng.randint(1, 30), rng.randint(1, 6), rng.randint(101, 3004)
        return f"{district}{street}{number}号{building}栋{unit}单元{room}"

    # --- records ------------------------------------------------------------------------

    def records(self, people: list[Person]) -> Iterator[tuple[str, PersonRecord]]:
        """(person_id, record) for every card and hospital record, in arrival order."""
        out: list[tuple[str, PersonRecord]] = []
        for person in people:
            if self.rng.random() < self.rates.card:
                out.append((person.person_id, self._card_record(person)))
            n = self._poisson(self.rates.records_mean)
            hospitals = self.rng.sample(HOSPITALS, min(n, len(HOSPITALS)))
            for code, _, no_hanzi in hospitals:
                out.append((person.person_id, self._hospital_record(person, code, no_hanzi)))
        self.rng.shuffle(out)
        yield from out

    def _poisson(self, mean: float) -> int:
        # small-mean Poisson by inversion, at least one record
        n, p, threshold = 0, 1.0, pow(2.718281828, -mean)
        while True:
            p *= self.rng.random()
            if p < threshold:
                return max(n, 1)
            n += 1

    def _card_record(self, p: Person) -> PersonRecord:
        minutes = self.rng.randint(0, 10**6)
        stamp = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes)
        return PersonRecord(
            record_id=f"card:{p.person_id}",
            source=CARD_SOURCE,
            names=(PersonName(p.family, p.given),),
            birth_date=p.birth_date,
            gender=p.gender,
            phone=p.phone,
            address=p.address,
            locality=p.district,
            resident_id=p.resident_id,
            card_no=None,
            updated_at=stamp,
        )

    def _hospital_record(self, p: Person, hospital: str, no_hanzi: bool) -> PersonRecord:
        rng, r = self.rng, self.rates
        family, given = p.family, p.given
        roll = rng.random()
        if roll < r.homophone:
            family, given = self._homophone_swap(family, given)
        elif roll < r.homophone + r.name_typo:
            given = self._typo_char(given)
        if no_hanzi or rng.random() < r.pinyin_only:
            name = self._pinyin_form(family, given)
        else:
            split = rng.random() < 0.5
            name = PersonName(family, given) if split else PersonName("", family + given)

        born = p.birth_date
        roll = rng.random()
        if roll < r.dob_swap and born.day <= 12 and born.day != born.month:
            born = born.replace(month=born.day, day=born.month)
        elif roll < r.dob_swap + r.dob_typo:
            born = self._date_typo(born)

        phone: str | None = p.phone
        roll = rng.random()
        if roll < r.phone_missing:
            phone = None
        elif roll < r.phone_missing + r.phone_changed:
            phone = self._phone()
        elif roll < r.phone_missing + r.phone_changed + r.phone_typo:
            phone = self._digit_typo(p.phone, start=3)

        address, district = p.address, p.district
        roll = rng.random()
        if roll < r.moved:
            _, district, _, _ = self._district()
            address = self._address(district)
        elif roll < r.moved + r.address_short:
            address = address.split("号")[0] + "号"

        rid: str | None = p.resident_id
        roll = rng.random()
        if roll < r.id_missing:
            rid = None
        elif roll < r.id_missing + r.id_typo:
            rid = self._digit_typo(p.resident_id, start=6)

        self._mrn[hospital] = self._mrn.get(hospital, rng.randint(10**6, 2 * 10**6)) + rng.randint(
            1, 9
        )
        mrn = f"{hospital.upper()}{self._mrn[hospital]}"
        minutes = rng.randint(0, 5 * 10**6)
        stamp = dt.datetime(2015, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes)
        return PersonRecord(
            record_id=f"{hospital}:{mrn}",
            source=hospital,
            names=(name,),
            birth_date=born,
            gender=None if rng.random() < r.gender_missing else p.gender,
            phone=phone,
            address=address,
            locality=district,
            resident_id=rid,
            identifiers=(Identifier(f"urn:hie:mrn:{hospital}", mrn),),
            updated_at=stamp,
        )

    def _homophone_swap(self, family: str, given: str) -> tuple[str, str]:
        chars = list(family + given)
        spots = [i for i, ch in enumerate(chars) if ch in self._homophone]
        if not spots:
            return family, given
        i = self.rng.choice(spots)
        options = [c for c in self._homophone[chars[i]] if c != chars[i]]
        chars[i] = self.rng.choice(options)
        text = "".join(chars)
        return text[: len(family)], text[len(family) :]

    def _typo_char(self, given: str) -> str:
        i = self.rng.randrange(len(given))
        return given[:i] + self.rng.choice(TYPO_CHARS) + given[i + 1 :]

    def _pinyin_form(self, family: str, given: str) -> PersonName:
        fam = SURNAME_READINGS.get(family, ("".join(lazy_pinyin(family)),))[0]
        giv = "".join(lazy_pinyin(given)).replace("v", "u")
        style = self.rng.random()
        if style < 0.5:
            return PersonName(fam.upper(), giv.upper())
        if style < 0.75:
            return PersonName("", f"{fam}{giv}".upper())
        return PersonName(fam.capitalize(), giv.capitalize())

    def _date_typo(self, born: dt.date) -> dt.date:
        for _ in range(10):
            s = born.strftime("%Y%m%d")
            i = self.rng.randrange(2, 8)
            s = s[:i] + str(self.rng.randrange(10)) + s[i + 1 :]
            try:
                typo = dt.date(int(s[:4]), int(s[4:6]), int(s[6:8]))
            except ValueError:
                continue
            if typo != born and typo <= self.today:
                return typo
        return born + dt.timedelta(days=1)

    def _digit_typo(self, value: str, start: int) -> str:
        i = self.rng.randrange(start, len(value) - 1)
        d = self.rng.choice([c for c in "0123456789" if c != value[i]])
        return value[:i] + d + value[i + 1 :]


def generate(
    people: int, *, seed: int = 7, rates: Rates | None = None, today: dt.date | None = None
) -> tuple[list[Person], list[tuple[str, PersonRecord]]]:
    gen = Generator(seed, rates or Rates(), today or dt.date(2026, 11, 28))
    population = gen.people(people)
    return population, list(gen.records(population))


def _json(value: object) -> object:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(type(value))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, help="JSON lines file (default: stdout)")
    args = ap.parse_args(argv)
    population, records = generate(args.people, seed=args.seed)
    sink = args.out.open("w", encoding="utf-8") if args.out else sys.stdout
    for person_id, record in records:
        row = {"person_id": person_id, **dataclasses.asdict(record)}
        sink.write(json.dumps(row, ensure_ascii=False, default=_json) + "\n")
    if args.out:
        sink.close()
        print(f"{len(population)} people, {len(records)} records -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
