"""The social security card's file map, declared as data (pySim style).

The SSSE AID, the files and their SFIs, each data item's tag, format and length, in file order. Both cardlib
(reading) and sim (personalizing and answering) use these declarations, so the map is written once; what
differs between spec versions and regions (record numbering, item forms, padding) is in cardlib.profiles.

An item file holds one SIMPLE-TLV record per data item (tag | length | value), in the order declared here.
READ RECORD addresses it as ISO 7816-4 says: P2 = (SFI << 3) | 4 reads record NUMBER P1 (EF05 SFI 5 -> P2 2C,
EF06 SFI 6 -> P2 34), P2 = (SFI << 3) | 0 reads the first record whose identifier (the tag) is P1. Record
number and tag differ: on EF05 record n happens to carry tag n, on EF06 records 1..7 carry 08 09 4E 0A 0B 0C
0D (version 1 cards have no 4E, so 1..6). The reply is the whole TLV record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

from construct import Bytes, Const, Int8ub, Int32ub, Struct

from cardlib import fields
from cardlib.fields import Field

#: "sx1.sh." + GBK "社会保障"
SSSE_AID = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")
MF_FID = 0x3F00


class RecordKind(Enum):
    ITEMS = "items"  # one SIMPLE-TLV record per data item; the record identifier is the tag
    CYCLIC = "cyclic"  # fixed-length records without identifiers, newest first (transaction files)


@dataclass(frozen=True)
class DataItem:
    """One data item: its own TLV record in a record file."""

    tag: int
    name: str
    fmt: Field
    label: str = ""
    since_version: str = "1.00"  # first spec version that carries the item

    @property
    def length(self) -> int:
        return self.fmt.length

    @cached_property
    def since_generation(self) -> int:
        """The card generation that first carries the item (the major part of `since_version`)."""
        return int(self.since_version.split(".")[0])


@dataclass(frozen=True)
class RecordFile:
    """A record EF: its FID, SFI and items (in file order)."""

    name: str
    fid: int
    sfi: int
    items: tuple[DataItem, ...] = ()
    kind: RecordKind = RecordKind.ITEMS
    record_length: int = 0  # CYCLIC files: the fixed record length
    max_records: int = 0  # CYCLIC files: how many records the card keeps

    @property
    def p2_sfi(self) -> int:
        """P2 for READ/UPDATE RECORD of record number P1 in this file by SFI."""
        return (self.sfi << 3) | 4

    @property
    def p2_identifier(self) -> int:
        """P2 for READ RECORD of the first record with identifier (tag) P1 in this file by SFI."""
        return self.sfi << 3

    def item(self, tag_or_name: int | str) -> DataItem:
        for it in self.items:
            if it.tag == tag_or_name or it.name == tag_or_name:
                return it
        raise KeyError(f"{self.name} has no item {tag_or_name!r}")

    def items_for(self, spec_version: str) -> tuple[DataItem, ...]:
        return tuple(i for i in self.items if _version_key(i.since_version) <= _version_key(spec_version))


@dataclass(frozen=True)
class DedicatedFile:
    """A DF with its files."""

    name: str
    fid: int
    label: str
    files: tuple[RecordFile, ...] = field(default=())


def _version_key(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split("."))
    except ValueError:
        return (0,)


# ---- EF05: issuer data (never changes) -------------------------------------------------------------------
EF05 = RecordFile(
    "EF05",
    0xEF05,
    5,
    (
        DataItem(0x01, "card_id", fields.b(16), "卡识别码"),
        DataItem(0x02, "card_type", fields.an(1), "卡类别"),
        DataItem(0x03, "spec_version", fields.an(4), "规范版本"),
        DataItem(0x04, "issuer_code", fields.cn(12), "初始化机构编号"),  # 24 BCD digits; some cards: 12 ASCII
        DataItem(0x05, "issue_date", fields.date(), "发卡日期"),
        DataItem(0x06, "expiry_date", fields.date(), "卡有效期"),
        DataItem(0x07, "card_number", fields.an(9), "卡号"),
    ),
)

# ---- EF06: holder data (never changes) -------------------------------------------------------------------
EF06 = RecordFile(
    "EF06",
    0xEF06,
    6,
    (
        DataItem(0x08, "social_security_number", fields.an(18), "社会保障号码"),
        DataItem(0x09, "name", fields.gbk(30), "姓名"),
        DataItem(0x4E, "name_extension", fields.gbk(20), "姓名扩展", since_version="2.00"),
        DataItem(0x0A, "sex", fields.an(1), "性别"),
        DataItem(0x0B, "nation", fields.cn(1), "民族"),
        DataItem(0x0C, "birth_place", fields.cn(3), "出生地"),
        DataItem(0x0D, "birth_date", fields.date(), "出生日期"),
    ),
)

# ---- DF01..DF04 (the items the project uses today; extend as data) ---------------------------------------
DF01 = DedicatedFile(
    "DF01",
    0xDF01,
    "公共应用",
    (
        RecordFile(
            "EF05",
            0xEF05,
            5,
            (
                DataItem(0x29, "residence_address", fields.gbk(80), "常住地址"),
                DataItem(0x2A, "phone", fields.an(15), "联系电话"),
            ),
        ),
    ),
)
DF02 = DedicatedFile(
    "DF02",
    0xDF02,
    "就业应用",
    (RecordFile("EF05", 0xEF05, 5, (DataItem(0x36, "employment_status", fields.cn(1), "就业状态"),)),),
)
DF03 = DedicatedFile(
    "DF03",
    0xDF03,
    "社会保险应用",
    (
        RecordFile(
            "EF05",
            0xEF05,
            5,
            (
                DataItem(0x40, "pension_status", fields.an(1), "养老待遇状态"),
                DataItem(0x41, "pension_region", fields.cn(3), "养老参保地"),
            ),
        ),
    ),
)
#: DF04 transaction records: cyclic, fixed length, written with a MAC after each settlement.
DF04_TRANSACTIONS = RecordFile("EF15", 0xEF15, 0x15, (), kind=RecordKind.CYCLIC, record_length=48, max_records=10)
DF04 = DedicatedFile(
    "DF04",
    0xDF04,
    "医疗保险应用",
    (
        RecordFile(
            "EF05",
            0xEF05,
            5,
            (
                DataItem(0x50, "medical_region", fields.cn(3), "医保统筹区"),
                DataItem(0x51, "insured_category", fields.an(1), "参保类别"),
            ),
        ),
        DF04_TRANSACTIONS,
    ),
)

SSSE_FILES: tuple[RecordFile, ...] = (EF05, EF06)
APPLICATIONS: tuple[DedicatedFile, ...] = (DF01, DF02, DF03, DF04)


def application(name: str) -> DedicatedFile:
    """The application DF01..DF04 by name (ValueError for another)."""
    for df in APPLICATIONS:
        if df.name == name:
            return df
    raise ValueError(f"no application {name!r}; the applications are {', '.join(a.name for a in APPLICATIONS)}")


#: the items `read_basic()` reads, in order (13 READ RECORDs after one SELECT; the name extension 4E only
#: when the name fills its record, see cardlib.card)
BASIC_ITEMS: tuple[tuple[RecordFile, str], ...] = tuple(
    (f, name)
    for f, names in (
        (EF05, ("card_id", "card_type", "spec_version", "issuer_code", "issue_date", "expiry_date", "card_number")),
        (EF06, ("social_security_number", "name", "sex", "nation", "birth_place", "birth_date")),
    )
    for name in names
)


# ---- keys and algorithms -----------------------------------------------------------------------------------
class KeyType(Enum):
    """The card's key families, each diversified from its own issuer master key (DOMAIN.md, Security).

    The value is the key reference the card commands use in P2 (EXTERNAL/INTERNAL AUTHENTICATE) and the
    PSAM's key-type code.
    """

    IAK = 0x01  # internal authentication: the card proves itself
    EAK = 0x02  # external authentication: the terminal proves itself to the card
    CMK = 0x03  # card maintenance: card block (84 16)
    MAK_DF01 = 0x11  # application maintenance keys: MACs on writes, application block (84 1E)
    MAK_DF02 = 0x12
    MAK_DF03 = 0x13
    MAK_DF04 = 0x14
    PUK = 0x21  # PIN unblock
    PRK = 0x22  # PIN reload


def maintenance_key(df_name: str) -> KeyType:
    """The maintenance key type that protects writes in application `df_name` (DF01..DF04)."""
    return KeyType[f"MAK_{df_name}"]


#: Files whose contents never change after issuance (writes answer 6985).
READ_ONLY_FILES = frozenset({"EF05", "EF06"})


# ---- DF04 transaction record (48 bytes, written with a MAC after each settlement) --------------------------
TRANSACTION_KINDS = {"settle": 0x01, "refund": 0x02, "void": 0x03, "pension_collect": 0x04}
TransactionRecord = Struct(
    "kind" / Int8ub,
    "time" / fields.cn(7).construct,  # YYYYMMDDhhmmss
    "terminal_number" / fields.cn(6).construct,  # the PSAM's 12 digits
    "serial" / Int32ub,
    "institution" / fields.an(10).construct,
    "total" / Int32ub,  # amounts in the smallest unit, as the centre answered them
    "fund" / Int32ub,
    "account" / Int32ub,
    "cash" / Int32ub,
    "reserved" / Const(bytes(4), Bytes(4)),
)
assert TransactionRecord.sizeof() == DF04_TRANSACTIONS.record_length
