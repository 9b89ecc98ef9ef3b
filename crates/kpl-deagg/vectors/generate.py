#!/usr/bin/env python3
"""Generate test vectors for shardwise-kpl-deagg with an independent implementation.

The aggregates come from the reference Python aggregator, PyPI `aws-kinesis-agg` (tested with
1.2.3, which also needs `six` and `protobuf`):

    pip install aws-kinesis-agg==1.2.3 six protobuf
    python3 crates/kpl-deagg/vectors/generate.py > crates/kpl-deagg/vectors/vectors.json

Two kinds of vectors:

* "aggregation": user records fed to `RecordAggregator` in order, with the aggregates it emits.
  The Rust tests check that `Aggregator` (single-record shortcut off, same max size) emits the
  same bytes and outer keys, and that deaggregating each Python aggregate yields the user records
  back with sub-sequence numbers and hash keys (MD5 of the partition key, or the explicit hash key).

* "deaggregation": inputs built here (corruptions of Python aggregates, or bodies serialized by
  the `protobuf` package with fields left out), each with the outcome the KCL produces for it
  according to ../../../../shared/notes/kpl-format.md section 5 (not the Python deaggregator's,
  which differs: it ignores required fields and reads explicit hash keys wrongly).

Keys are passed to the aggregator as UTF-8 `bytes`. With `str` keys, aws-kinesis-agg 1.2.3 looks
the encoded key up in a table keyed by the `str`, never finds it, and so over-estimates the size
of every record whose key is already in the table: the bytes of each aggregate are the same, but
it starts new aggregates earlier than needed. With `bytes` keys its size accounting is exact,
which is what the KPL and our aggregator do.

Large data is described by a pattern instead of being stored: byte i of pattern (seed, len) is
(i * 31 + seed) % 251. Aggregates of 64 KiB or more are stored as their length and MD5.
"""

import base64
import hashlib
import json
import sys

# The aggregator module puts its own folder on sys.path, which messages_pb2 needs: import it first.
from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg import messages_pb2

MAGIC = b"\xf3\x89\x9a\xc2"
INLINE_LIMIT = 64 * 1024


def pattern(seed, length):
    return bytes((i * 31 + seed) % 251 for i in range(length))


def data_spec(data, spec=None):
    if spec is not None:
        return {"pattern": {"seed": spec[0], "len": spec[1]}}
    return {"b64": base64.b64encode(data).decode("ascii")}


def blob_spec(blob):
    if len(blob) < INLINE_LIMIT:
        return {"b64": base64.b64encode(blob).decode("ascii")}
    return {"len": len(blob), "md5": hashlib.md5(blob).hexdigest()}


def hash_key(pk, ehk):
    if ehk is not None:
        return str(int(ehk))
    return str(int.from_bytes(hashlib.md5(pk.encode("utf-8")).digest(), "big"))


def aggregation_case(name, records, max_size=None, note=""):
    """records: list of (pk str, ehk str or None, data bytes, optional pattern spec)."""
    aggregator = RecordAggregator() if max_size is None else RecordAggregator(max_size=max_size)
    outputs = []

    def emit(agg):
        pk, ehk, blob = agg.get_contents()
        outputs.append(
            {
                "partition_key": pk.decode("utf-8"),
                "explicit_hash_key": None if ehk is None else ehk.decode("utf-8"),
                "user_records": agg.get_num_user_records(),
                "data": blob_spec(blob),
            }
        )

    for pk, ehk, data, *spec in records:
        full = aggregator.add_user_record(
            pk.encode("utf-8"), data, None if ehk is None else ehk.encode("utf-8")
        )
        if full is not None:
            emit(full)
    last = aggregator.clear_and_get()
    if last is not None:
        emit(last)
    return {
        "name": name,
        "note": note,
        "max_size": aggregator.max_size,
        "records": [
            {
                "partition_key": pk,
                "explicit_hash_key": ehk,
                "data": data_spec(data, spec[0] if spec else None),
                "hash_key": hash_key(pk, ehk),
            }
            for pk, ehk, data, *spec in records
        ],
        "aggregates": outputs,
    }


def python_aggregate(records):
    aggregator = RecordAggregator()
    for pk, ehk, data in records:
        assert aggregator.add_user_record(pk.encode(), data, None if ehk is None else ehk.encode()) is None
    return aggregator.clear_and_get().get_contents()[2]


def framed(body):
    return MAGIC + body + hashlib.md5(body).digest()


def sub(pk, data, sub_sequence_number, ehk=None):
    return {
        "partition_key": pk,
        "explicit_hash_key": ehk,
        "data": data_spec(data),
        "sub_sequence_number": sub_sequence_number,
        "hash_key": hash_key(pk, ehk),
    }


def deaggregation_case(name, blob, expect, note=""):
    """expect: {"framing": "aggregated" | "plain:<reason>", "records": [...] (aggregated only),
    "dropped_invalid": n}"""
    return {"name": name, "note": note, "data": blob_spec(blob), "expect": expect}


def plain(reason):
    return {"framing": "plain:" + reason}


def aggregated(records, dropped_invalid=0):
    return {"framing": "aggregated", "records": records, "dropped_invalid": dropped_invalid}


def aggregation_cases():
    cases = []
    cases.append(aggregation_case("single_record", [("pk-single", None, b"hello, kinesis")],
                                  note="the Python aggregator has no single-record shortcut"))
    cases.append(aggregation_case("thousand_small", [("key-%d" % i, None, b"%010d" % i) for i in range(1000)]))
    cases.append(aggregation_case(
        "shared_keys", [("shared-%d" % (i % 7), None, b"record %d" % i) for i in range(100)],
        note="keys deduplicated in first-use order"))
    cases.append(aggregation_case(
        "explicit_hash_keys_only",
        [("pk-%d" % i, str((2**128 - 1) // 10 * (i % 10)), b"ehk %d" % i) for i in range(30)]))
    cases.append(aggregation_case(
        "explicit_hash_keys_mixed",
        [("pk-%d" % i, ("7" if i % 3 == 0 else ("42" if i % 3 == 1 else None)), b"mixed %d" % i) for i in range(12)],
        note="records without an explicit hash key must not pick up table entry 0"))
    cases.append(aggregation_case(
        "numeric_partition_keys", [(k, None, b"n" + k.encode()) for k in ["42", "1", "0", "7", "1000", "3"]],
        note="integer-like keys, which the npm aggregator reorders"))
    cases.append(aggregation_case(
        "unicode_keys",
        [("ключ", None, b"cyrillic"), ("鍵", None, b"cjk"), ("🔑", None, b"emoji"),
         ("é" * 512, None, b"1024-byte key"), ("plain", None, b"ascii")]))
    cases.append(aggregation_case("empty_data", [("a", None, b""), ("b", None, b""), ("a", None, b"")]))
    cases.append(aggregation_case("binary_data", [("bin", None, bytes(range(256))), ("bin", None, bytes(range(255, -1, -1)))]))
    cases.append(aggregation_case(
        "varint_boundaries",
        [("len-%d" % n, None, pattern(n % 251, n)) for n in [0, 1, 127, 128, 129, 16383, 16384, 16385]]))
    cases.append(aggregation_case(
        "many_keys_two_byte_indices", [("k%03d" % i, None, b"v") for i in range(300)],
        note="key-table indices of 128 and more take two varint bytes"))
    cases.append(aggregation_case(
        "split_at_small_max_size", [("key-%d" % (i % 13), None, pattern(i, 37 + i % 50)) for i in range(400)],
        max_size=2000, note="aggregates packed to at most 2000 bytes"))
    fit = [("k", None, b"x" * 70), ("k", None, b"y" * 70), ("k", None, b"z" * 70)]
    cases.append(aggregation_case(
        "split_exact_fit", fit, max_size=175,
        note="two records make exactly 175 bytes (4 + 3 + 2 * 76 + 16); the third starts a new one"))
    cases.append(aggregation_case(
        "split_one_byte_short", fit, max_size=174, note="as split_exact_fit, one byte less: no two fit"))
    big = 512 * 1024
    cases.append(aggregation_case(
        "two_half_mib_records",
        [("half-a", None, pattern(1, big), (1, big)), ("half-b", None, pattern(2, big), (2, big))],
        note="does not fit in 1 MiB with the framing: two aggregates"))
    near = 1024 * 1024 - 64
    cases.append(aggregation_case(
        "near_one_mib_record", [("big", None, pattern(3, near), (3, near))]))
    three = 400 * 1024
    cases.append(aggregation_case(
        "three_400k_records",
        [("t%d" % i, None, pattern(10 + i, three), (10 + i, three)) for i in range(3)]))
    return cases


def deaggregation_cases():
    cases = []
    records = [("a", None, b"r0"), ("b", None, b"r1"), ("a", None, b"r2")]
    valid = python_aggregate(records)
    body = valid[4:-16]
    expected = [sub(pk, data, i, ehk) for i, (pk, ehk, data) in enumerate(records)]
    cases.append(deaggregation_case("valid", valid, aggregated(expected)))
    cases.append(deaggregation_case("no_magic", b"plain user data", plain("no_magic")))
    cases.append(deaggregation_case("first_byte_changed", b"\xf2" + valid[1:], plain("no_magic")))
    cases.append(deaggregation_case("magic_only", MAGIC, plain("too_short")))
    cases.append(deaggregation_case("empty_body_20_bytes", framed(b""), plain("too_short")))
    cases.append(deaggregation_case("truncated", valid[:-1], plain("checksum_mismatch")))
    cases.append(deaggregation_case("trailing_byte", valid + b"\x00", plain("checksum_mismatch")))
    cases.append(deaggregation_case("digest_bit_flip", valid[:-1] + bytes([valid[-1] ^ 1]), plain("checksum_mismatch")))
    cases.append(deaggregation_case(
        "body_bit_flip", valid[:8] + bytes([valid[8] ^ 4]) + valid[9:], plain("checksum_mismatch")))
    cases.append(deaggregation_case("pb_truncated_body", framed(body[:-3]), plain("malformed_protobuf")))
    cases.append(deaggregation_case("pb_invalid_wire_type", framed(body + b"\x0f"), plain("malformed_protobuf")))
    cases.append(deaggregation_case("pb_field_number_zero", framed(b"\x00\x00" + body), plain("malformed_protobuf")))

    # Bodies with required fields left out, serialized by the protobuf package itself.
    message = messages_pb2.AggregatedRecord()
    message.partition_key_table.append("a")
    record = message.records.add()
    record.partition_key_index = 0  # no data
    cases.append(deaggregation_case(
        "pb_missing_data", framed(message.SerializePartialToString()), plain("missing_required_field")))
    message = messages_pb2.AggregatedRecord()
    message.partition_key_table.append("a")
    message.records.add().data = b"x"  # no partition_key_index
    cases.append(deaggregation_case(
        "pb_missing_partition_key_index", framed(message.SerializePartialToString()),
        plain("missing_required_field")))
    message = messages_pb2.AggregatedRecord()
    message.partition_key_table.append("a")
    record = message.records.add()
    record.partition_key_index = 0
    record.data = b"x"
    record.tags.add().value = "no key"
    cases.append(deaggregation_case(
        "pb_tag_without_key", framed(message.SerializePartialToString()), plain("missing_required_field")))

    # Sub-record errors: the KCL keeps what came before and loses the rest.
    def built(pks, ehks, recs):
        message = messages_pb2.AggregatedRecord()
        message.partition_key_table.extend(pks)
        message.explicit_hash_key_table.extend(ehks)
        for pk_index, ehk_index, data in recs:
            record = message.records.add()
            record.partition_key_index = pk_index
            if ehk_index is not None:
                record.explicit_hash_key_index = ehk_index
            record.data = data
        return framed(message.SerializeToString())

    cases.append(deaggregation_case(
        "pk_index_out_of_range", built(["a"], [], [(0, None, b"r0"), (3, None, b"r1"), (0, None, b"r2")]),
        aggregated([sub("a", b"r0", 0)], dropped_invalid=2)))
    cases.append(deaggregation_case(
        "ehk_index_out_of_range", built(["a"], ["5"], [(0, 0, b"r0"), (0, 1, b"r1"), (0, None, b"r2")]),
        aggregated([sub("a", b"r0", 0, "5")], dropped_invalid=2)))
    cases.append(deaggregation_case(
        "ehk_index_without_table", built(["a"], [], [(0, None, b"r0"), (0, 0, b"r1")]),
        aggregated([sub("a", b"r0", 0)], dropped_invalid=1)))
    cases.append(deaggregation_case(
        "ehk_not_decimal", built(["a"], ["12", "twelve"], [(0, 0, b"r0"), (0, 1, b"r1"), (0, 0, b"r2")]),
        aggregated([sub("a", b"r0", 0, "12")], dropped_invalid=2)))
    cases.append(deaggregation_case(
        "ehk_two_to_the_128", built(["a"], ["1", str(2**128)], [(0, 0, b"r0"), (0, 1, b"r1")]),
        aggregated([], dropped_invalid=2), note="out of every shard's range: the KCL drops the whole aggregate"))
    cases.append(deaggregation_case(
        "ehk_negative", built(["a"], ["-1"], [(0, None, b"r0"), (0, 0, b"r1")]),
        aggregated([], dropped_invalid=2)))
    cases.append(deaggregation_case(
        "explicit_hash_keys_mixed", built(["a", "b"], ["99"], [(0, None, b"r0"), (1, 0, b"r1"), (1, None, b"r2")]),
        aggregated([sub("a", b"r0", 0), sub("b", b"r1", 1, "99"), sub("b", b"r2", 2)]),
        note="absent explicit_hash_key_index means no explicit hash key, not entry 0"))
    cases.append(deaggregation_case("empty_records_list", built(["a"], [], []), aggregated([])))
    cases.append(deaggregation_case(
        "unknown_fields", framed(body + b"\x78\x05" + b"\x82\x01\x03abc"), aggregated(expected)))
    cases.append(deaggregation_case(
        "unknown_group_field", framed(b"\x7b\x08\x01\x7c" + body), aggregated(expected)))
    cases.append(deaggregation_case(
        "noncanonical_field_order",
        framed(b"\x1a\x06\x08\x01\x1a\x02r0" + b"\x0a\x01a" + b"\x0a\x01b"),
        aggregated([sub("b", b"r0", 0)])))
    cases.append(deaggregation_case(
        "duplicate_scalar_last_wins",
        framed(b"\x0a\x01a\x0a\x01b" + b"\x1a\x0a\x08\x00\x08\x01\x1a\x01x\x1a\x01y"),
        aggregated([sub("b", b"y", 0)])))
    return cases


def main():
    vectors = {
        "generator": "aws-kinesis-agg %s (PyPI), protobuf %s" % (
            _version("aws-kinesis-agg"), _version("protobuf")),
        "aggregation": aggregation_cases(),
        "deaggregation": deaggregation_cases(),
    }
    json.dump(vectors, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


def _version(package):
    from importlib.metadata import version
    return version(package)


if __name__ == "__main__":
    main()
