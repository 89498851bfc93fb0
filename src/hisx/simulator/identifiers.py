"""Identifier builders with their check characters (GB 11643, GB 11714, GB 32100) and text tricks.

Written from the published rules (standards-notes §5), independently of ``hisx.standards``.
"""

from __future__ import annotations

import numpy as np

ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
ID_CHECK = np.array(list("10X98765432"))
_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def id_check_chars(body17: np.ndarray) -> np.ndarray:
    """ISO 7064 MOD 11-2 check characters for an array of 17-digit strings."""
    digits = np.frombuffer("".join(body17.tolist()).encode("ascii"), dtype=np.uint8)
    digits = (digits.reshape(-1, 17) - 48).astype(np.int64)
    return ID_CHECK[(digits @ ID_WEIGHTS) % 11]


def id_numbers(division: np.ndarray, birth: np.ndarray, male: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    """18-char national ID numbers: division + YYYYMMDD + sequence (odd = male) + check char."""
    n = len(division)
    ymd = np.datetime_as_string(birth.astype("datetime64[D]"), unit="D")
    ymd = np.char.replace(ymd, "-", "")
    seq = rng.integers(0, 500, n) * 2 + np.where(male, 1, 0)
    body = np.char.add(np.char.add(division.astype("U6"), ymd.astype("U8")),
                       np.char.zfill(seq.astype("U3"), 3))
    return np.char.add(body, id_check_chars(body))


def wrong_check_char(id_no: str, k: int) -> str:
    """The same ID number with a check character that is certainly wrong."""
    right = id_no[17]
    options = [c for c in "0123456789X" if c != right]
    return id_no[:17] + options[k % len(options)]


def gb11714_check(code8: str) -> str:
    """Check character of a GB 11714 organisation code (8 chars + check)."""
    w = (3, 7, 9, 10, 5, 8, 4, 2)
    vals = [int(c) if c.isdigit() else ord(c) - 55 for c in code8]
    c = 11 - sum(a * b for a, b in zip(vals, w, strict=True)) % 11
    return "X" if c == 10 else ("0" if c == 11 else str(c))


_USCC_ALPHA = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_W = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc(division: str, org_code9: str, prefix: str = "12") -> str:
    """18-char 统一社会信用代码: 1 机构编制 + 2 事业单位, division, org code, check char."""
    body = prefix + division + org_code9
    s = sum(_USCC_ALPHA.index(c) * w for c, w in zip(body, _USCC_W, strict=True))
    return body + _USCC_ALPHA[(31 - s % 31) % 31]


def org_registration_code(code8: str, division: str) -> str:
    """22-char 医疗机构登记号: org code (9) + division (6) + 11 公有 + B100 社区卫生服务中心 + 1 非营利."""
    return code8 + gb11714_check(code8) + division + "11" + "B100" + "1"


def fullwidth(s: str) -> str:
    """ASCII digits to full-width digits (U+FF10..U+FF19)."""
    return s.translate(_FULLWIDTH)


def mix64(x: np.ndarray, salt: int) -> np.ndarray:
    """A splitmix64-style hash of integer ids: stable per-entity draws without state."""
    z = (x.astype(np.uint64) + np.uint64((salt * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF))
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def unit_hash(x: np.ndarray, salt: int) -> np.ndarray:
    """Uniform [0, 1) per id and salt."""
    return (mix64(x, salt) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
