#!/usr/bin/env python3
"""Clients for the S3 crash tests (integration/tests/s3.rs kills the daemon while they run).

  crash_client.py slow-put BUCKET KEY BYTES     PUT through a presigned URL, sending slowly
                                                 (never finishes on its own within the test)
  crash_client.py put BUCKET KEY BYTES          a plain PUT
  crash_client.py complete BUCKET KEY READYFILE create an upload of three parts, touch READYFILE,
                                                 then send CompleteMultipartUpload
  crash_client.py verify BUCKET KEY             after the restart: the object is either absent
                                                 with its upload still pending (then it is
                                                 completed now), or complete and byte-identical
Environment: S3_ENDPOINT, KEY_A, SECRET_A.
"""

import hashlib
import http.client
import os
import sys
import time
import urllib.parse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

EP = os.environ["S3_ENDPOINT"]
S3 = boto3.client("s3", endpoint_url=EP, aws_access_key_id=os.environ["KEY_A"],
                  aws_secret_access_key=os.environ["SECRET_A"], region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def part(n):
    """Deterministic part contents: 5 MiB, 5 MiB, then 1 KiB."""
    size = (5 << 20) if n < 3 else 1024
    seed = hashlib.sha256(b"part-%d" % n).digest()
    return (seed * (size // len(seed) + 1))[:size]


def slow_put(bucket, key, total):
    url = S3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600)
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    c.putrequest("PUT", u.path + "?" + u.query)
    c.putheader("Content-Length", str(total))
    c.endheaders()
    chunk = b"s" * 65536
    sent = 0
    while sent < total:
        c.send(chunk)
        sent += len(chunk)
        time.sleep(0.05)


def complete(bucket, key, ready):
    uid = S3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for n in (1, 2, 3):
        e = S3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n, Body=part(n))["ETag"]
        parts.append({"PartNumber": n, "ETag": e})
    open(ready, "w").write(uid)
    try:
        S3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": parts})
    except Exception as e:  # the daemon is killed under us
        print("complete interrupted:", type(e).__name__)


def verify(bucket, key):
    want = part(1) + part(2) + part(3)
    try:
        got = S3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert got == want, f"object {key} is {len(got)} bytes, not the {len(want)} uploaded"
        assert "Uploads" not in S3.list_multipart_uploads(Bucket=bucket), "completed upload still listed"
        print("verify: the completion had committed; the object is whole")
        return
    except ClientError as e:
        assert e.response["Error"]["Code"] == "NoSuchKey", e
    ups = S3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert len(ups) == 1, ups
    uid = ups[0]["UploadId"]
    parts = S3.list_parts(Bucket=bucket, Key=key, UploadId=uid)["Parts"]
    assert [p["Size"] for p in parts] == [5 << 20, 5 << 20, 1024], parts
    S3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid,
                                 MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]})
    assert S3.get_object(Bucket=bucket, Key=key)["Body"].read() == want
    print("verify: the completion had not committed; the upload was intact and completes now")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "slow-put":
        slow_put(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif mode == "put":
        S3.put_object(Bucket=sys.argv[2], Key=sys.argv[3], Body=b"p" * int(sys.argv[4]))
    elif mode == "complete":
        complete(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "verify":
        verify(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {mode}")
