"""Pseudonymization: keyed person keys, key handling, masking."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hisx.standards import pseudonym as ps

KEY = ps.key_from_text("00112233445566778899aabbccddeeff")


def test_hex_and_text_keys_and_default_key_id():
    assert KEY.secret == bytes.fromhex("00112233445566778899aabbccddeeff")
    text = ps.key_from_text("not hex at all")
    assert text.secret == b"not hex at all"
    assert KEY.key_id.startswith("k") and len(KEY.key_id) == 9
    assert ps.key_from_text("abc", "2026-a").key_id == "2026-a"
    assert "00112233" not in repr(KEY)


def test_key_from_env(monkeypatch):
    monkeypatch.delenv(ps.KEY_ENV, raising=False)
    with pytest.raises(ps.PseudonymKeyError, match="HISX_PSEUDO_KEY"):
        ps.key_from_env()
    monkeypatch.setenv(ps.KEY_ENV, "secret-text")
    monkeypatch.setenv(ps.KEY_ID_ENV, "kid1")
    k = ps.key_from_env()
    assert k.key_id == "kid1" and k.secret == b"secret-text"


def test_strong_key_is_deterministic_and_keyed():
    k1, s1 = ps.person_key(KEY, "11010519491231002X")
    k2, _ = ps.person_key(KEY, " １１０１０５１９４９１２３１００２x ")  # full-width, spaces, lower x
    k3, _ = ps.person_key(ps.key_from_text("another key"), "11010519491231002X")
    assert s1 == ps.STRONG and k1 == k2 and k1 != k3
    assert len(k1) == 64 and "11010519491231002X" not in k1


def test_legacy_15_digit_id_gets_the_18_digit_key():
    assert ps.normalize_id("110105491231002") == "11010519491231002X"
    assert ps.person_key(KEY, "110105491231002") == ps.person_key(KEY, "11010519491231002X")


def test_weak_fallback():
    k, s = ps.person_key(KEY, None, "张三", date(1980, 1, 2), "M")
    k2, _ = ps.person_key(KEY, "bad-id", " 张三 ", "1980-01-02", "m")
    assert s == ps.WEAK and k == k2
    assert ps.person_key(KEY, None, "张三", date(1980, 1, 3), "M")[0] != k
    keys = ps.person_keys(KEY, ["11010519491231002X", None], ["a", "b"], [None, None], ["1", "2"])
    assert len(keys) == 2 and keys[0] == ps.person_key(KEY, "11010519491231002X")[0]


def test_valid_id_examples():
    for ok in ("11010519491231002X", "440524188001010014", "34052419800101001X",
               "370101190102039973"):
        assert ps.valid_id(ok), ok
    for bad in ("110105194912310021", "11010519491331002X", "1101051949123100", None, ""):
        assert not ps.valid_id(bad), bad


def test_masks():
    assert ps.mask_id("11010519491231002X") == "110105********002X"
    assert ps.mask_id("E12345678") == "E1*****78"
    assert ps.mask_id("军字第12345678") == "军字*******78"
    assert ps.mask_id("110105491231002") == "110105*****1002"
    assert ps.mask_id("12345") == "*****"
    assert ps.mask_id(None) is None
    assert ps.mask_phone("13812345678") == "138****5678"
    assert ps.mask_phone("1234") == "**34"
    assert ps.mask_phone("0" * 21) == "000" + "*" * 13 + "0000"  # capped at 20 characters
    assert len(ps.mask_phone("9" * 64)) == 20
    assert ps.mask_name("张三丰") == "张*"


def test_weak_key_of_a_birth_date_outside_python_dates() -> None:
    """pandas parses year 0 and negative years, Python's date cannot hold them: the key is
    still computed, from the text as recorded (hypothesis found '-0001-01-01')."""
    from hisx.standards import pseudonym

    key = pseudonym.key_from_text("test-key-aaaaaaaaaaaaaaaaaaaaaaaa")
    for raw in ("-0001-01-01", "0000-01-01"):
        k, strength = pseudonym.person_key(key, None, "王五", raw, "1")
        assert strength == pseudonym.WEAK and len(k) == 64
        assert k == pseudonym.person_key(key, None, "王五", raw, "1")[0]
    assert (pseudonym.person_key(key, None, "王五", "-0001-01-01", "1")[0]
            != pseudonym.person_key(key, None, "王五", "0000-01-01", "1")[0])


_ID_CHARS = "0123456789X x١٣"


@pytest.mark.parametrize("seed", range(3))
def test_column_wise_validity_and_keys_equal_the_per_row_definition(seed) -> None:
    """``valid_ids`` (Arrow regex, numpy date and check character) and the column-wise keys
    equal :func:`valid_id` and :func:`person_key` row by row: real and impossible dates
    (29 February of leap and common years, month 00/13, day 00/32, year 0000), right and
    wrong check characters, non-ASCII digits, wrong lengths, None."""
    import random

    rnd = random.Random(seed)
    ids: list[str | None] = [None, "", "0" * 18]
    for _ in range(3000):
        y = rnd.choice([0, 1, 1900, 1949, 2000, 2004, 2023, 2024, 2100, 9999])
        mth, d = rnd.choice([(2, 29), (2, 28), (2, 30), (0, 5), (13, 1), (4, 31), (12, 0),
                             (1, 32), (rnd.randint(1, 12), rnd.randint(1, 28))])
        body = f"{rnd.randint(0, 999999):06d}{y:04d}{mth:02d}{d:02d}{rnd.randint(0, 999):03d}"
        tail = rnd.choice([ps.check_char(body), rnd.choice("0123456789X")])
        text = body + tail
        if rnd.random() < 0.1:  # a stray character or a wrong length
            i = rnd.randrange(len(text))
            text = text[:i] + rnd.choice(_ID_CHARS) + text[i + rnd.choice([0, 1]):]
        ids.append(text)
    want = [ps.valid_id(x) for x in ids]
    assert ps.valid_ids(ids).tolist() == want
    assert 300 < sum(want) < len(ids) - 300  # both kinds well represented
    names = [rnd.choice(["张三", None, "李 四"]) for _ in ids]
    births = [rnd.choice([date(1949, 12, 31), None, "1990-01-02"]) for _ in ids]
    genders = [rnd.choice(["1", "2", None]) for _ in ids]
    got = ps.person_keys_strength(KEY, ids, names, births, genders)
    assert list(zip(*got, strict=True)) == [ps.person_key(KEY, *row)
                                           for row in zip(ids, names, births, genders, strict=True)]


@pytest.mark.parametrize("secret", [b"k" * 16, bytes(range(64)), bytes(range(200)), "密钥".encode()])
def test_hmac_hex_is_rfc2104_hmac_sha256(secret: bytes) -> None:
    """The hand-keyed SHA-256 states give the standard library's HMAC, for keys shorter
    than, equal to and longer than the block (hashed first), and for non-ASCII messages."""
    import hashlib
    import hmac

    key = ps.PseudoKey(secret, "k")
    for msg in ("id:110105194912310021", "weak|张三|1990-01-02|1", ""):
        want = hmac.new(secret, msg.encode("utf-8"), hashlib.sha256).hexdigest()
        assert ps.hmac_hex(key, msg) == want


def test_hmac_hex_many_is_hmac_hex_of_each_message() -> None:
    """DuckDB's column-wise HMAC gives the per-message one (long keys hashed first, non-ASCII
    and empty messages), nulls stay null."""
    import pyarrow as pa

    msgs = ["id:110105194912310021", "weak|张三|1990-01-02|1", "", None, "phone:138"]
    for secret in (b"k" * 16, bytes(range(200))):
        key = ps.PseudoKey(secret, "k")
        got = ps.hmac_hex_many(key, pa.array(msgs, pa.string())).to_pylist()
        assert got == [None if m is None else ps.hmac_hex(key, m) for m in msgs]
    assert ps.hmac_hex_many(KEY, pa.array([], pa.string())).to_pylist() == []


_MASK_CHARS = ["1", "9", "X", "x", " ", "\t", "\x1c", "\u3000", "张", "١", "é", "ﬁ", "-"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.lists(st.sampled_from(_MASK_CHARS), max_size=24)
                          .map("".join),
                          st.sampled_from(["110105491231002", " 11010519491231002x ",
                                           "123456789012345", "12345678901234567X"])),
                min_size=1, max_size=20))
def test_column_wise_masks_and_normalization_equal_the_per_value_ones(values) -> None:
    """:func:`normalize_ids`, :func:`mask_ids`, :func:`mask_phones`, :func:`mask_names`
    (Arrow kernels for ASCII values, the per-value function for the rest) give exactly what
    the per-value functions give; text is what standardization hands them (non-empty)."""
    texts = [None if x is None or not x else x for x in values]
    assert ps.normalize_ids(texts).to_pylist() == [ps.normalize_id(x) for x in texts]
    assert ps.mask_ids(texts).to_pylist() == [ps.mask_id(x) for x in texts]
    assert ps.mask_phones(texts).to_pylist() == [ps.mask_phone(x) for x in texts]
    assert ps.mask_names(texts).to_pylist() == [ps.mask_name(x) for x in texts]


def test_column_wise_helpers_leave_values_that_are_not_text_to_the_caller() -> None:
    assert ps.normalize_ids(["110105194912310021", 42]) is None
    assert ps.mask_ids([b"bytes"]) is None
