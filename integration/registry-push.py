#!/usr/bin/env python3
"""Push an OCI image layout tar (as images/*/build.sh writes) to a Docker Registry v2 over plain
HTTP, with the standard library only. Each blob is skipped if the registry has it (HEAD), else
uploaded in one piece (POST an upload, PUT its location ?digest=...). Then the manifest is PUT
under the tag and read back to check its digest. HTTP basic auth with --user/--password.

Usage: integration/registry-push.py OCI_LAYOUT_TAR REGISTRY_ADDR REPO:TAG [--user U --password P]
"""
import argparse
import base64
import hashlib
import http.client
import json
import sys
import tarfile
import urllib.parse

MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")


class PushError(Exception):
    pass


class Registry:
    def __init__(self, addr, user=None, password=None):
        self.addr = addr
        self.headers = {}
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self.headers["Authorization"] = "Basic " + token

    def request(self, method, url, body=None, headers=None):
        """One request on a fresh connection; url is a path or an absolute http:// URL.
        Returns (status, headers, body bytes)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("", "http"):
            raise PushError(f"registry redirected to unsupported URL {url}")
        target = parts.path + ("?" + parts.query if parts.query else "")
        conn = http.client.HTTPConnection(parts.netloc or self.addr, timeout=60)
        try:
            conn.request(method, target, body=body, headers={**self.headers, **(headers or {})})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        except OSError as e:
            raise PushError(f"{method} http://{parts.netloc or self.addr}{target}: {e}") from e
        finally:
            conn.close()

    def expect(self, want, method, url, **kw):
        status, headers, body = self.request(method, url, **kw)
        if status != want:
            hint = " (authentication required or rejected: check --user/--password)" if status == 401 else ""
            raise PushError(f"{method} {url}: HTTP {status}{hint}: {body[:300].decode(errors='replace')}")
        return headers, body


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(layout_tar, addr, repo, tag, user, password):
    reg = Registry(addr, user, password)
    with tarfile.open(layout_tar) as tar:
        def member(name):
            for prefix in ("", "./"):
                try:
                    return tar.extractfile(prefix + name).read()
                except KeyError:
                    pass
            raise PushError(f"{layout_tar}: no {name} in the OCI layout")

        def blob(digest):
            algo, _, hexdigest = digest.partition(":")
            data = member(f"blobs/{algo}/{hexdigest}")
            if sha256(data) != digest:
                raise PushError(f"{layout_tar}: blob {digest} does not match its digest")
            return data

        # The manifest: the index entry named after the tag, else the only entry.
        entries = json.loads(member("index.json")).get("manifests", [])
        named = [m for m in entries
                 if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
        if len(named) != 1 and len(entries) != 1:
            raise PushError(f"{layout_tar}: index.json has {len(entries)} manifests, none named {tag}")
        desc = (named or entries)[0]
        if desc.get("mediaType") not in MANIFEST_TYPES:
            raise PushError(f"unsupported manifest media type {desc.get('mediaType')}")
        manifest_bytes = blob(desc["digest"])
        manifest = json.loads(manifest_bytes)

        for d in [manifest["config"], *manifest["layers"]]:
            digest = d["digest"]
            status, _, _ = reg.request("HEAD", f"/v2/{repo}/blobs/{digest}")
            if status == 200:
                print(f"blob {digest}: already present")
                continue
            if status != 404:
                hint = " (authentication required or rejected: check --user/--password)" if status == 401 else ""
                raise PushError(f"HEAD /v2/{repo}/blobs/{digest}: HTTP {status}{hint}")
            data = blob(digest)
            headers, _ = reg.expect(202, "POST", f"/v2/{repo}/blobs/uploads/",
                                    headers={"Content-Length": "0"})
            location = headers.get("Location")
            if not location:
                raise PushError("upload started without a Location header")
            sep = "&" if "?" in location else "?"
            reg.expect(201, "PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}", body=data,
                       headers={"Content-Type": "application/octet-stream",
                                "Content-Length": str(len(data))})
            print(f"blob {digest}: uploaded ({len(data)} bytes)")

    # The manifest, then read it back with the same media type and compare digests.
    headers, _ = reg.expect(201, "PUT", f"/v2/{repo}/manifests/{tag}", body=manifest_bytes,
                            headers={"Content-Type": desc["mediaType"]})
    want = desc["digest"]
    if headers.get("Docker-Content-Digest") not in (None, want):
        raise PushError(f"registry stored manifest as {headers['Docker-Content-Digest']}, not {want}")
    _, body = reg.expect(200, "GET", f"/v2/{repo}/manifests/{tag}",
                         headers={"Accept": desc["mediaType"]})
    if sha256(body) != want:
        raise PushError(f"GET manifest {repo}:{tag} returned digest {sha256(body)}, not {want}")
    print(f"pushed {addr}/{repo}:{tag} manifest {want}")


def main():
    p = argparse.ArgumentParser(description="Push an OCI layout tar to a Docker Registry v2 (HTTP).")
    p.add_argument("layout_tar")
    p.add_argument("registry", help="HOST:PORT")
    p.add_argument("ref", help="REPO:TAG (TAG defaults to latest)")
    p.add_argument("--user")
    p.add_argument("--password")
    a = p.parse_args()
    repo, sep, tag = a.ref.rpartition(":")
    if not sep or "/" in tag:   # no tag, or the colon was a port in the repo part
        repo, tag = a.ref, "latest"
    if (a.user is None) != (a.password is None):
        p.error("--user and --password go together")
    try:
        push(a.layout_tar, a.registry, repo, tag, a.user, a.password)
    except (PushError, OSError, tarfile.TarError, ValueError, KeyError) as e:
        print(f"registry-push: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
