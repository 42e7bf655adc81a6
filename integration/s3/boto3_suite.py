#!/usr/bin/env python3
"""Every S3 operation cloudlet serves, driven by boto3 (PyPI), with its error codes.

Environment (set by integration/tests/s3.rs):
  S3_ENDPOINT             http://127.0.0.1:PORT
  KEY_A, SECRET_A         an access key of project A (member)
  KEY_B, SECRET_B         an access key of project B
  VIEWER_KEY, VIEWER_SECRET  a viewer key of project A
  QUOTA_BUCKET            a bucket of project A limited to 1 MiB
Prints "ok <name>" per check and exits non-zero on the first failure.
"""

import hashlib
import io
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

EP = os.environ["S3_ENDPOINT"]
CFG = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})


def client(key, secret, **kw):
    return boto3.client("s3", endpoint_url=EP, aws_access_key_id=key, aws_secret_access_key=secret,
                        region_name="us-east-1", config=CFG, **kw)


A = client(os.environ["KEY_A"], os.environ["SECRET_A"])
B = client(os.environ["KEY_B"], os.environ["SECRET_B"])
VIEWER = client(os.environ["VIEWER_KEY"], os.environ["VIEWER_SECRET"])
ANON = boto3.client("s3", endpoint_url=EP, region_name="us-east-1",
                    config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}))


def ok(name):
    print("ok", name, flush=True)


def code_of(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    return None, 200


def missing(c, bucket, key):
    """HEAD answers have no body, so a missing key shows as a bare 404."""
    assert code_of(c.head_object, Bucket=bucket, Key=key) == ("404", 404)


def expect(code, fn, *a, **kw):
    got = code_of(fn, *a, **kw)
    assert got[0] == code, f"expected {code}, got {got}"
    return got


BK = "boto-a"
A.create_bucket(Bucket=BK)
assert BK in [b["Name"] for b in A.list_buckets()["Buckets"]]
assert BK not in [b["Name"] for b in B.list_buckets()["Buckets"]], "project B sees A's bucket"
A.head_bucket(Bucket=BK)
expect("BucketAlreadyOwnedByYou", A.create_bucket, Bucket=BK)
expect("BucketAlreadyExists", B.create_bucket, Bucket=BK)
expect("InvalidBucketName", A.create_bucket, Bucket="Bad_Name")
ok("buckets")

# Put / get / head with metadata, content type and headers.
body = b"hello, edge object storage\n" * 100
r = A.put_object(Bucket=BK, Key="docs/readme.txt", Body=body, ContentType="text/plain",
                 Metadata={"owner": "factory-7"}, CacheControl="max-age=60")
assert r["ETag"] == '"%s"' % hashlib.md5(body).hexdigest(), r["ETag"]
g = A.get_object(Bucket=BK, Key="docs/readme.txt")
assert g["Body"].read() == body
assert g["ContentType"] == "text/plain" and g["Metadata"] == {"owner": "factory-7"} and g["CacheControl"] == "max-age=60"
h = A.head_object(Bucket=BK, Key="docs/readme.txt")
assert h["ContentLength"] == len(body) and h["ETag"] == r["ETag"]
etag = r["ETag"]
ok("put-get-head")

# Checksums: a good CRC32 and SHA256 are accepted and returned; a wrong one is BadDigest.
r = A.put_object(Bucket=BK, Key="sum.bin", Body=b"abc", ChecksumAlgorithm="SHA256")
assert r.get("ChecksumSHA256") == "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=", r
g = A.get_object(Bucket=BK, Key="sum.bin", ChecksumMode="ENABLED")
assert g["Body"].read() == b"abc" and g.get("ChecksumSHA256") == "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
expect("BadDigest", A.put_object, Bucket=BK, Key="bad.bin", Body=b"abc", ChecksumCRC32="AAAAAA==")
expect("BadDigest", A.put_object, Bucket=BK, Key="bad.bin", Body=b"abc", ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg==")
missing(A, BK, "bad.bin")
ok("checksums")

# Ranged GETs.
g = A.get_object(Bucket=BK, Key="docs/readme.txt", Range="bytes=0-4")
assert g["Body"].read() == b"hello" and g["ContentRange"] == f"bytes 0-4/{len(body)}"
g = A.get_object(Bucket=BK, Key="docs/readme.txt", Range="bytes=-3")
assert g["Body"].read() == body[-3:]
g = A.get_object(Bucket=BK, Key="docs/readme.txt", Range=f"bytes={len(body) - 2}-")
assert g["Body"].read() == body[-2:]
expect("InvalidRange", A.get_object, Bucket=BK, Key="docs/readme.txt", Range=f"bytes={len(body)}-")
A.put_object(Bucket=BK, Key="empty", Body=b"")
assert A.get_object(Bucket=BK, Key="empty")["Body"].read() == b""
expect("InvalidRange", A.get_object, Bucket=BK, Key="empty", Range="bytes=-5")
g = A.get_object(Bucket=BK, Key="docs/readme.txt", ResponseContentType="application/x-override",
                 ResponseContentDisposition='attachment; filename="r.txt"')
assert g["ContentType"] == "application/x-override" and g["ContentDisposition"] == 'attachment; filename="r.txt"', g
ok("ranges")

# Conditional GETs (RFC 9110 §13).
assert A.get_object(Bucket=BK, Key="docs/readme.txt", IfMatch=etag)["Body"].read() == body
expect("PreconditionFailed", A.get_object, Bucket=BK, Key="docs/readme.txt", IfMatch='"0000"')
assert code_of(A.get_object, Bucket=BK, Key="docs/readme.txt", IfNoneMatch=etag)[1] == 304
assert A.get_object(Bucket=BK, Key="docs/readme.txt", IfNoneMatch='"0000"')["Body"].read() == body
future = datetime.now(timezone.utc) + timedelta(days=1)
past = datetime.now(timezone.utc) - timedelta(days=1)
assert code_of(A.get_object, Bucket=BK, Key="docs/readme.txt", IfModifiedSince=future)[1] == 304
assert A.get_object(Bucket=BK, Key="docs/readme.txt", IfModifiedSince=past)["Body"].read() == body
expect("PreconditionFailed", A.get_object, Bucket=BK, Key="docs/readme.txt", IfUnmodifiedSince=past)
expect("PreconditionFailed", A.put_object, Bucket=BK, Key="docs/readme.txt", Body=b"x", IfNoneMatch="*")
expect("NotImplemented", A.put_object, Bucket=BK, Key="docs/readme.txt", Body=b"x", IfNoneMatch=etag)
ok("conditional")

# Copy: metadata copied, or replaced.
A.copy_object(Bucket=BK, Key="copy/one.txt", CopySource={"Bucket": BK, "Key": "docs/readme.txt"})
h = A.head_object(Bucket=BK, Key="copy/one.txt")
assert h["ETag"] == etag and h["Metadata"] == {"owner": "factory-7"} and h["ContentType"] == "text/plain"
A.copy_object(Bucket=BK, Key="copy/two.txt", CopySource={"Bucket": BK, "Key": "docs/readme.txt"},
              MetadataDirective="REPLACE", Metadata={"stage": "2"}, ContentType="application/x-test")
h = A.head_object(Bucket=BK, Key="copy/two.txt")
assert h["Metadata"] == {"stage": "2"} and h["ContentType"] == "application/x-test"
assert A.get_object(Bucket=BK, Key="copy/two.txt")["Body"].read() == body
expect("NoSuchKey", A.copy_object, Bucket=BK, Key="x", CopySource={"Bucket": BK, "Key": "missing"})
ok("copy")

# Listings: prefix, delimiter, continuation (v2) and markers (v1).
for i in range(7):
    A.put_object(Bucket=BK, Key=f"logs/2026/{i:02d}.log", Body=b"%d" % i)
A.put_object(Bucket=BK, Key="logs/top.log", Body=b"t")
l = A.list_objects_v2(Bucket=BK, Prefix="logs/", Delimiter="/")
assert [c["Prefix"] for c in l["CommonPrefixes"]] == ["logs/2026/"], l
assert [o["Key"] for o in l["Contents"]] == ["logs/top.log"]
keys, token, pages = [], None, 0
while True:
    kw = {"ContinuationToken": token} if token else {}
    l = A.list_objects_v2(Bucket=BK, Prefix="logs/2026/", MaxKeys=3, **kw)
    keys += [o["Key"] for o in l["Contents"]]
    pages += 1
    if not l["IsTruncated"]:
        break
    token = l["NextContinuationToken"]
assert keys == [f"logs/2026/{i:02d}.log" for i in range(7)] and pages == 3, (keys, pages)
l = A.list_objects_v2(Bucket=BK, StartAfter="logs/2026/04.log", Prefix="logs/2026/")
assert [o["Key"] for o in l["Contents"]] == ["logs/2026/05.log", "logs/2026/06.log"]
l = A.list_objects_v2(Bucket=BK, Delimiter="/")
assert sorted(c["Prefix"] for c in l["CommonPrefixes"]) == ["copy/", "docs/", "logs/"], l
l1 = A.list_objects(Bucket=BK, Prefix="logs/2026/", MaxKeys=4)
assert l1["IsTruncated"] and len(l1["Contents"]) == 4
l2 = A.list_objects(Bucket=BK, Prefix="logs/2026/", Marker=l1["Contents"][-1]["Key"])
assert [o["Key"] for o in l2["Contents"]] == [f"logs/2026/{i:02d}.log" for i in range(4, 7)]
ok("listings")

# DeleteObjects (including a key that does not exist, which S3 reports as deleted).
r = A.delete_objects(Bucket=BK, Delete={"Objects": [{"Key": f"logs/2026/{i:02d}.log"} for i in range(7)] + [{"Key": "nope"}]})
assert len(r["Deleted"]) == 8 and not r.get("Errors"), r
assert "Contents" not in A.list_objects_v2(Bucket=BK, Prefix="logs/2026/")
A.delete_object(Bucket=BK, Key="logs/top.log")
expect("NoSuchKey", A.get_object, Bucket=BK, Key="logs/top.log")
ok("delete")

# Multipart: create, upload (a part twice), list, complete; the ETag convention; errors.
p1 = os.urandom(5 << 20)
p2 = os.urandom(1 << 20)
up = A.create_multipart_upload(Bucket=BK, Key="big/file.bin", ContentType="application/x-big", Metadata={"m": "1"})
uid = up["UploadId"]
A.upload_part(Bucket=BK, Key="big/file.bin", UploadId=uid, PartNumber=1, Body=os.urandom(5 << 20))
e1 = A.upload_part(Bucket=BK, Key="big/file.bin", UploadId=uid, PartNumber=1, Body=p1)["ETag"]
e2 = A.upload_part(Bucket=BK, Key="big/file.bin", UploadId=uid, PartNumber=2, Body=p2)["ETag"]
parts = A.list_parts(Bucket=BK, Key="big/file.bin", UploadId=uid)["Parts"]
assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [(1, e1, 5 << 20), (2, e2, 1 << 20)], parts
ups = A.list_multipart_uploads(Bucket=BK)["Uploads"]
assert [(u["Key"], u["UploadId"]) for u in ups] == [("big/file.bin", uid)]
expect("InvalidPartOrder", A.complete_multipart_upload, Bucket=BK, Key="big/file.bin", UploadId=uid,
       MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})
expect("InvalidPart", A.complete_multipart_upload, Bucket=BK, Key="big/file.bin", UploadId=uid,
       MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]})
missing(A, BK, "big/file.bin")
r = A.complete_multipart_upload(Bucket=BK, Key="big/file.bin", UploadId=uid,
                                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
want = hashlib.md5(bytes.fromhex(e1.strip('"')) + bytes.fromhex(e2.strip('"'))).hexdigest() + "-2"
assert r["ETag"] == f'"{want}"', (r["ETag"], want)
g = A.get_object(Bucket=BK, Key="big/file.bin")
assert g["Body"].read() == p1 + p2 and g["ContentType"] == "application/x-big" and g["Metadata"] == {"m": "1"}
assert A.get_object(Bucket=BK, Key="big/file.bin", Range=f"bytes={(5 << 20) - 2}-{(5 << 20) + 1}")["Body"].read() == p1[-2:] + p2[:2]
expect("NoSuchUpload", A.upload_part, Bucket=BK, Key="big/file.bin", UploadId=uid, PartNumber=3, Body=b"x")
# A retried completion (its answer lost) succeeds with the same ETag; GET by part number.
r2 = A.complete_multipart_upload(Bucket=BK, Key="big/file.bin", UploadId=uid,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
assert r2["ETag"] == r["ETag"]
g = A.get_object(Bucket=BK, Key="big/file.bin", PartNumber=2)
assert g["Body"].read() == p2 and g["PartsCount"] == 2 and g["ContentRange"] == f"bytes {5 << 20}-{(6 << 20) - 1}/{6 << 20}", g
expect("InvalidRange", A.get_object, Bucket=BK, Key="big/file.bin", PartNumber=3)
# A part below 5 MiB that is not the last one.
uid = A.create_multipart_upload(Bucket=BK, Key="small")["UploadId"]
s1 = A.upload_part(Bucket=BK, Key="small", UploadId=uid, PartNumber=1, Body=b"a" * 1024)["ETag"]
s2 = A.upload_part(Bucket=BK, Key="small", UploadId=uid, PartNumber=2, Body=b"b")["ETag"]
expect("EntityTooSmall", A.complete_multipart_upload, Bucket=BK, Key="small", UploadId=uid,
       MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": s1}, {"PartNumber": 2, "ETag": s2}]})
A.abort_multipart_upload(Bucket=BK, Key="small", UploadId=uid)
expect("NoSuchUpload", A.list_parts, Bucket=BK, Key="small", UploadId=uid)
assert "Uploads" not in A.list_multipart_uploads(Bucket=BK)
ok("multipart")

# Unknown bucket and key; bad credentials; an expired presigned URL.
expect("NoSuchBucket", A.get_object, Bucket="no-such-bucket", Key="k")
expect("NoSuchBucket", A.list_objects_v2, Bucket="no-such-bucket")
expect("NoSuchKey", A.get_object, Bucket=BK, Key="missing")
expect("SignatureDoesNotMatch", client(os.environ["KEY_A"], "wrong-secret").list_objects_v2, Bucket=BK)
expect("InvalidAccessKeyId", client("ak-01AAAAAAAAAAAAAAAAAAAAAAAA", "x").list_objects_v2, Bucket=BK)
url = A.generate_presigned_url("get_object", Params={"Bucket": BK, "Key": "docs/readme.txt"}, ExpiresIn=60)
assert urllib.request.urlopen(url).read() == body
url = A.generate_presigned_url("get_object", Params={"Bucket": BK, "Key": "docs/readme.txt"}, ExpiresIn=1)
time.sleep(2)
try:
    urllib.request.urlopen(url)
    raise AssertionError("expired presigned URL was accepted")
except urllib.error.HTTPError as e:
    assert e.code == 403 and b"AccessDenied" in e.read()
ok("bad-requests")

# Isolation and policy: another project and anonymous callers are denied; public-read opens reads.
expect("AccessDenied", B.get_object, Bucket=BK, Key="docs/readme.txt")
expect("AccessDenied", B.put_object, Bucket=BK, Key="x", Body=b"x")
expect("AccessDenied", B.list_objects_v2, Bucket=BK)
expect("AccessDenied", ANON.get_object, Bucket=BK, Key="docs/readme.txt")
expect("AccessDenied", VIEWER.put_object, Bucket=BK, Key="x", Body=b"x")
assert VIEWER.get_object(Bucket=BK, Key="docs/readme.txt")["Body"].read() == body
A.create_bucket(Bucket="boto-public", ACL="public-read")
A.put_object(Bucket="boto-public", Key="index.html", Body=b"<h1>public</h1>")
assert ANON.get_object(Bucket="boto-public", Key="index.html")["Body"].read() == b"<h1>public</h1>"
assert B.get_object(Bucket="boto-public", Key="index.html")["Body"].read() == b"<h1>public</h1>"
assert urllib.request.urlopen(f"{EP}/boto-public/index.html").read() == b"<h1>public</h1>"
expect("AccessDenied", ANON.put_object, Bucket="boto-public", Key="x", Body=b"x")
expect("AccessDenied", B.delete_object, Bucket="boto-public", Key="index.html")
ok("isolation-policy")

# Quota: a bucket limited to 1 MiB refuses the write that would pass it, and keeps nothing of it.
QB = os.environ["QUOTA_BUCKET"]
A.put_object(Bucket=QB, Key="a", Body=b"x" * (700 << 10))
code, status = expect("QuotaExceeded", A.put_object, Bucket=QB, Key="b", Body=b"y" * (400 << 10))
# Refused from its declared length, before the body is stored.
expect("QuotaExceeded", A.put_object, Bucket=QB, Key="c", Body=b"y" * (8 << 20))
assert status == 403
missing(A, QB, "b")
A.put_object(Bucket=QB, Key="a", Body=b"z" * (1000 << 10))  # replacing counts the difference only
ok("quota")

# A bucket with objects is not deleted; empty, it is.
expect("BucketNotEmpty", A.delete_bucket, Bucket="boto-public")
A.delete_object(Bucket="boto-public", Key="index.html")
A.delete_bucket(Bucket="boto-public")
assert code_of(A.head_bucket, Bucket="boto-public") == ("404", 404)
ok("delete-bucket")
print("boto3 suite passed")
