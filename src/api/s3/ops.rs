//! Object operations of the S3 endpoint: listings, PUT/GET/HEAD with checksums, ranges and
//! conditions (RFC 9110 §13), server-side copy and multipart uploads.

use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::{CloudletS3, store_err};
use crate::site::buckets::Access;
use crate::site::objects::{Algorithms, Checksums, MAX_USER_META_BYTES, ObjectMeta, ObjectRow, StoreError, WriteCond, Written, meta_of, validate_key};

const MAX_KEYS: usize = 1000;

fn ts(ms: i64) -> Timestamp {
    Timestamp::from(SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

/// Seconds since the epoch of a timestamp (HTTP dates have whole seconds).
fn secs(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

fn etag(row: &ObjectRow) -> ETag {
    ETag::Strong(row.etag.clone())
}

/// The ETag an `If-Match` style condition names (`*` for any), without quotes.
pub(super) fn cond_etag(c: &ETagCondition) -> Option<String> {
    match c {
        ETagCondition::Any => Some("*".into()),
        ETagCondition::ETag(e) => Some(e.value().to_string()),
    }
}

fn cond_matches(c: &ETagCondition, row: &ObjectRow) -> bool {
    match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == row.etag,
    }
}

/// Percent-encode for `encoding-type=url` listings (all but unreserved characters and `/`).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn encoder(enc: Option<&EncodingType>) -> impl Fn(&str) -> String {
    let url = enc.is_some_and(|e| e.as_str() == EncodingType::URL);
    move |s: &str| if url { url_encode(s) } else { s.to_string() }
}

fn max_keys(m: Option<i32>) -> S3Result<usize> {
    match m {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok((n as usize).min(MAX_KEYS)),
    }
}

fn object_entry(o: &ObjectRow, enc: &impl Fn(&str) -> String) -> Object {
    Object {
        key: Some(enc(&o.key)),
        size: Some(o.size),
        e_tag: Some(etag(o)),
        last_modified: Some(ts(o.modified_ms)),
        storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
        ..Default::default()
    }
}

fn token_decode(t: &str) -> S3Result<String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "the continuation token is not one this endpoint issued"))
}

fn token_encode(k: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k)
}

pub(super) async fn list_objects_v2(s: &CloudletS3, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
    let i = &req.input;
    let (_, b) = s.bucket(&req, &i.bucket, Access::Read).await?;
    let max = max_keys(i.max_keys)?;
    let after = match &i.continuation_token {
        Some(t) => Some(token_decode(t)?),
        None => i.start_after.clone(),
    };
    let prefix = i.prefix.clone().unwrap_or_default();
    let l = s.site.list_objects(&b, &prefix, i.delimiter.as_deref(), after.as_deref(), max).await.map_err(store_err)?;
    let enc = encoder(i.encoding_type.as_ref());
    let out = ListObjectsV2Output {
        name: Some(i.bucket.clone()),
        prefix: Some(enc(&prefix)),
        delimiter: i.delimiter.as_deref().map(&enc),
        max_keys: Some(max as i32),
        key_count: Some((l.objects.len() + l.prefixes.len()) as i32),
        is_truncated: Some(l.truncated),
        continuation_token: i.continuation_token.clone(),
        next_continuation_token: l.next.as_deref().map(token_encode),
        start_after: i.start_after.as_deref().map(&enc),
        encoding_type: i.encoding_type.clone(),
        contents: Some(l.objects.iter().map(|o| object_entry(o, &enc)).collect()),
        common_prefixes: Some(l.prefixes.iter().map(|p| CommonPrefix { prefix: Some(enc(p)) }).collect()),
        ..Default::default()
    };
    Ok(S3Response::new(out))
}

pub(super) async fn list_objects_v1(s: &CloudletS3, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
    let i = &req.input;
    let (_, b) = s.bucket(&req, &i.bucket, Access::Read).await?;
    let max = max_keys(i.max_keys)?;
    let prefix = i.prefix.clone().unwrap_or_default();
    let l = s.site.list_objects(&b, &prefix, i.delimiter.as_deref(), i.marker.as_deref(), max).await.map_err(store_err)?;
    let enc = encoder(i.encoding_type.as_ref());
    let out = ListObjectsOutput {
        name: Some(i.bucket.clone()),
        prefix: Some(enc(&prefix)),
        marker: Some(i.marker.as_deref().map(&enc).unwrap_or_default()),
        delimiter: i.delimiter.as_deref().map(&enc),
        max_keys: Some(max as i32),
        is_truncated: Some(l.truncated),
        next_marker: l.next.as_deref().map(&enc),
        encoding_type: i.encoding_type.clone(),
        contents: Some(l.objects.iter().map(|o| object_entry(o, &enc)).collect()),
        common_prefixes: Some(l.prefixes.iter().map(|p| CommonPrefix { prefix: Some(enc(p)) }).collect()),
        ..Default::default()
    };
    Ok(S3Response::new(out))
}

/// Standard and user metadata given with a PUT, a copy or a multipart creation.
struct MetaIn<'a> {
    user: Option<&'a Metadata>,
    cache_control: Option<&'a String>,
    content_disposition: Option<&'a String>,
    content_encoding: Option<&'a String>,
    content_language: Option<&'a String>,
}

fn meta_in(m: MetaIn<'_>) -> S3Result<ObjectMeta> {
    let user: std::collections::BTreeMap<String, String> =
        m.user.map(|u| u.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect()).unwrap_or_default();
    let bytes: usize = user.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_USER_META_BYTES {
        return Err(s3_error!(MetadataTooLarge, "user metadata is limited to {MAX_USER_META_BYTES} bytes"));
    }
    Ok(ObjectMeta {
        user,
        cache_control: m.cache_control.cloned(),
        content_disposition: m.content_disposition.cloned(),
        // `aws-chunked` describes the upload's framing, not the object: S3 drops it.
        content_encoding: m.content_encoding.and_then(|e| {
            let kept: Vec<&str> = e.split(',').map(str::trim).filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked")).collect();
            (!kept.is_empty()).then(|| kept.join(", "))
        }),
        content_language: m.content_language.cloned(),
        checksums: Checksums::default(),
    })
}

/// The checksums a client sent (in headers, or announced in `x-amz-trailer`).
struct Given {
    checksums: Checksums,
    algorithms: Algorithms,
    md5: Option<String>,
}

fn given(headers: &HeaderMap, algorithm: Option<&ChecksumAlgorithm>, c: Checksums, md5: Option<&String>) -> Given {
    let mut a = Algorithms {
        crc32: c.crc32.is_some(),
        crc32c: c.crc32c.is_some(),
        crc64nvme: c.crc64nvme.is_some(),
        sha1: c.sha1.is_some(),
        sha256: c.sha256.is_some(),
    };
    let mut named = |n: &str| match n.to_ascii_lowercase().as_str() {
        "crc32" | "x-amz-checksum-crc32" => a.crc32 = true,
        "crc32c" | "x-amz-checksum-crc32c" => a.crc32c = true,
        "crc64nvme" | "x-amz-checksum-crc64nvme" => a.crc64nvme = true,
        "sha1" | "x-amz-checksum-sha1" => a.sha1 = true,
        "sha256" | "x-amz-checksum-sha256" => a.sha256 = true,
        _ => {}
    };
    if let Some(al) = algorithm {
        named(al.as_str());
    }
    if let Some(t) = headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()) {
        t.split(',').for_each(|n| named(n.trim()));
    }
    Given { checksums: c, algorithms: a, md5: md5.cloned() }
}

/// Compare what was computed with what the client sent, in headers or in the trailer.
fn verify(w: &Written, g: &Given, trailer: Option<HeaderMap>) -> Result<(), StoreError> {
    if let Some(m) = &g.md5 {
        use base64::Engine;
        if base64::engine::general_purpose::STANDARD.encode(w.md5) != *m {
            return Err(StoreError::BadDigest("the Content-MD5 you specified did not match what was received".into()));
        }
    }
    let t = |n: &str| trailer.as_ref().and_then(|h| h.get(n)).and_then(|v| v.to_str().ok()).map(str::to_string);
    let pairs = [
        ("CRC32", g.checksums.crc32.clone().or_else(|| t("x-amz-checksum-crc32")), &w.checksums.crc32),
        ("CRC32C", g.checksums.crc32c.clone().or_else(|| t("x-amz-checksum-crc32c")), &w.checksums.crc32c),
        ("CRC64NVME", g.checksums.crc64nvme.clone().or_else(|| t("x-amz-checksum-crc64nvme")), &w.checksums.crc64nvme),
        ("SHA1", g.checksums.sha1.clone().or_else(|| t("x-amz-checksum-sha1")), &w.checksums.sha1),
        ("SHA256", g.checksums.sha256.clone().or_else(|| t("x-amz-checksum-sha256")), &w.checksums.sha256),
    ];
    for (name, sent, got) in pairs {
        if let (Some(sent), Some(got)) = (sent, got)
            && &sent != got
        {
            return Err(StoreError::BadDigest(format!("the {name} you specified did not match the calculated checksum")));
        }
    }
    Ok(())
}

/// The body length the client declared (`x-amz-decoded-content-length` for aws-chunked bodies).
fn declared_len(headers: &HeaderMap, content_length: Option<i64>) -> Option<u64> {
    let decoded = headers.get("x-amz-decoded-content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    decoded.or(content_length.and_then(|n| u64::try_from(n).ok()))
}

/// Receive a body into a blob and verify its checksums. `replacing` is the key a PUT overwrites
/// (its bytes are freed), none for a part.
async fn receive(
    s: &CloudletS3,
    b: &crate::site::buckets::BucketRef,
    replacing: Option<&str>,
    req: (&HeaderMap, Option<i64>),
    body: Option<StreamingBlob>,
    g: &Given,
    trailer: Option<&s3s::TrailingHeaders>,
) -> S3Result<Written> {
    // Refuse a body that cannot fit the quota before reading it, and stop one that grows past it.
    let room = s.site.quota_room(b, replacing).await.map_err(store_err)?;
    if let (Some(room), Some(n)) = (room, declared_len(req.0, req.1))
        && n > room
    {
        return Err(store_err(StoreError::QuotaExceeded(format!(
            "the object of {n} bytes would exceed the bucket's or the project's quota ({room} bytes left)"
        ))));
    }
    let body = body.unwrap_or_else(|| StreamingBlob::wrap(futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>()));
    let w = s.site.write_blob(body, g.algorithms, room).await.map_err(store_err)?;
    if let Err(e) = verify(&w, g, trailer.and_then(|t| t.take())) {
        s.site.discard_blob(&w).await;
        return Err(store_err(e));
    }
    Ok(w)
}

fn put_checksums(i: &PutObjectInput) -> Checksums {
    Checksums {
        crc32: i.checksum_crc32.clone(),
        crc32c: i.checksum_crc32c.clone(),
        crc64nvme: i.checksum_crc64nvme.clone(),
        sha1: i.checksum_sha1.clone(),
        sha256: i.checksum_sha256.clone(),
    }
}

pub(super) async fn put_object(s: &CloudletS3, mut req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
    let (_, b) = s.bucket(&req, &req.input.bucket, Access::Write).await?;
    validate_key(&req.input.key).map_err(store_err)?;
    let i = &req.input;
    let meta = meta_in(MetaIn {
        user: i.metadata.as_ref(),
        cache_control: i.cache_control.as_ref(),
        content_disposition: i.content_disposition.as_ref(),
        content_encoding: i.content_encoding.as_ref(),
        content_language: i.content_language.as_ref(),
    })?;
    let g = given(&req.headers, i.checksum_algorithm.as_ref(), put_checksums(i), i.content_md5.as_ref());
    if i.if_none_match.as_ref().is_some_and(|c| !c.is_any()) {
        return Err(s3_error!(NotImplemented, "a write takes If-None-Match: * only"));
    }
    let cond = WriteCond { if_match: i.if_match.as_ref().and_then(cond_etag), if_none_match_any: i.if_none_match.as_ref().is_some_and(ETagCondition::is_any) };
    let (key, ct) = (i.key.clone(), i.content_type.clone());
    let len = i.content_length;
    let w = receive(s, &b, Some(&key), (&req.headers, len), req.input.body.take(), &g, req.trailing_headers.as_ref()).await?;
    let sums = w.checksums.clone();
    let row = s.site.commit_object(&b, &key, w, ct, meta, cond).await.map_err(store_err)?;
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(etag(&row)),
        size: Some(row.size),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        ..Default::default()
    }))
}

/// Evaluate GET/HEAD conditions in RFC 9110 §13.2.2 order.
fn check_read_cond(
    row: &ObjectRow,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified: Option<&Timestamp>,
    if_unmodified: Option<&Timestamp>,
) -> Result<(), StoreError> {
    let modified = row.modified_ms / 1000;
    match if_match {
        Some(c) if !cond_matches(c, row) => return Err(StoreError::PreconditionFailed),
        None if if_unmodified.is_some_and(|t| modified > secs(t)) => return Err(StoreError::PreconditionFailed),
        _ => {}
    }
    match if_none_match {
        Some(c) if cond_matches(c, row) => return Err(StoreError::NotModified),
        None if if_modified.is_some_and(|t| modified <= secs(t)) => return Err(StoreError::NotModified),
        _ => {}
    }
    Ok(())
}

fn not_modified(e: StoreError, row: &ObjectRow) -> S3Error {
    let mut err = store_err(e);
    if *err.code() == S3ErrorCode::NotModified {
        let mut h = HeaderMap::new();
        if let Ok(v) = format!("\"{}\"", row.etag).parse() {
            h.insert("etag", v);
        }
        err.set_headers(h);
    }
    err
}

/// `(offset, length)` of a range; an empty range (any range of an empty object) is
/// unsatisfiable (RFC 9110 §14.1.2).
fn range_of(r: Option<&Range>, size: u64) -> Result<Option<(u64, u64)>, StoreError> {
    match r {
        None => Ok(None),
        Some(r) => match r.check(size) {
            Ok(rg) if rg.end > rg.start => Ok(Some((rg.start, rg.end - rg.start))),
            _ => Err(StoreError::InvalidRange(size)),
        },
    }
}

/// The byte range of part `n` (1-based): each part of a multipart object is one blob; a
/// single-part object has only part 1.
fn part_range(n: i32, blob_sizes: &[u64], size: u64) -> Result<(u64, u64), StoreError> {
    let idx = usize::try_from(n).ok().filter(|&i| i >= 1).ok_or_else(|| StoreError::InvalidArgument("partNumber starts at 1".into()))? - 1;
    if blob_sizes.len() <= 1 {
        return if idx == 0 && size > 0 { Ok((0, size)) } else { Err(StoreError::InvalidRange(size)) };
    }
    let len = *blob_sizes.get(idx).ok_or(StoreError::InvalidRange(size))?;
    Ok((blob_sizes[..idx].iter().sum(), len))
}

fn whole_object_checksums(meta: &ObjectMeta, mode: Option<&ChecksumMode>, ranged: bool) -> Checksums {
    if ranged || mode.is_none_or(|m| m.as_str() != ChecksumMode::ENABLED) {
        return Checksums::default();
    }
    meta.checksums.clone()
}

/// The headers GET and HEAD share (their output types have the same fields), plus `extra` ones.
macro_rules! object_output {
    ($ty:ident, $row:expr, $meta:expr, $sums:expr, $len:expr, $range:expr, $size:expr $(, $f:ident: $v:expr)*) => {{
        let (row, meta, sums, size) = ($row, $meta, $sums, $size);
        $ty {
            $($f: $v,)*
            content_length: Some($len as i64),
            content_range: $range.map(|(o, l): (u64, u64)| format!("bytes {o}-{}/{size}", o + l - 1)),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(row)),
            last_modified: Some(ts(row.modified_ms)),
            content_type: row.content_type.clone().or_else(|| Some("binary/octet-stream".into())),
            cache_control: meta.cache_control.clone(),
            content_disposition: meta.content_disposition.clone(),
            content_encoding: meta.content_encoding.clone(),
            content_language: meta.content_language.clone(),
            metadata: (!meta.user.is_empty()).then(|| meta.user.clone().into_iter().collect()),
            parts_count: (row.parts > 0).then_some(row.parts as i32),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_crc64nvme: sums.crc64nvme,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            ..Default::default()
        }
    }};
}

pub(super) async fn get_object(s: &CloudletS3, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
    let i = &req.input;
    let (_, b) = s.bucket(&req, &i.bucket, Access::Read).await?;
    let (row, files) = s.site.open_object(&b, &i.key).await.map_err(store_err)?;
    check_read_cond(&row, i.if_match.as_ref(), i.if_none_match.as_ref(), i.if_modified_since.as_ref(), i.if_unmodified_since.as_ref())
        .map_err(|e| not_modified(e, &row))?;
    let size = row.size as u64;
    let range = match i.part_number {
        Some(n) if i.range.is_some() => return Err(s3_error!(InvalidRequest, "give a Range or a partNumber, not both {n}")),
        Some(n) => Some(part_range(n, &files.part_sizes(), size).map_err(store_err)?),
        None => range_of(i.range.as_ref(), size).map_err(store_err)?,
    };
    let (offset, len) = range.unwrap_or((0, size));
    let meta = meta_of(&row);
    let sums = whole_object_checksums(&meta, i.checksum_mode.as_ref(), range.is_some());
    let body = StreamingBlob::wrap(files.stream(offset, len));
    let out = object_output!(GetObjectOutput, &row, &meta, sums, len, range, size, body: Some(body));
    Ok(S3Response::new(out))
}

pub(super) async fn head_object(s: &CloudletS3, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
    let i = &req.input;
    let (_, b) = s.bucket(&req, &i.bucket, Access::Read).await?;
    if i.part_number.is_some() {
        return Err(s3_error!(NotImplemented, "HEAD with partNumber is not supported; GET takes it"));
    }
    let row = s.site.head_object(&b, &i.key).await.map_err(store_err)?;
    check_read_cond(&row, i.if_match.as_ref(), i.if_none_match.as_ref(), i.if_modified_since.as_ref(), i.if_unmodified_since.as_ref())
        .map_err(|e| not_modified(e, &row))?;
    let size = row.size as u64;
    let range = range_of(i.range.as_ref(), size).map_err(store_err)?;
    let meta = meta_of(&row);
    let sums = whole_object_checksums(&meta, i.checksum_mode.as_ref(), range.is_some());
    let out = object_output!(HeadObjectOutput, &row, &meta, sums, range.map_or(size, |r| r.1), range, size);
    Ok(S3Response::new(out))
}

pub(super) async fn copy_object(s: &CloudletS3, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
    let i = &req.input;
    let CopySource::Bucket { bucket: src_bucket, key: src_key, .. } = &i.copy_source else {
        return Err(s3_error!(NotImplemented, "copy from an access point is not supported"));
    };
    let (_, dst) = s.bucket(&req, &i.bucket, Access::Write).await?;
    let (_, src) = s.bucket(&req, src_bucket, Access::Read).await?;
    validate_key(&i.key).map_err(store_err)?;
    let replace = match i.metadata_directive.as_ref().map(|d| d.as_str()) {
        Some(MetadataDirective::REPLACE) => {
            let m = meta_in(MetaIn {
                user: i.metadata.as_ref(),
                cache_control: i.cache_control.as_ref(),
                content_disposition: i.content_disposition.as_ref(),
                content_encoding: i.content_encoding.as_ref(),
                content_language: i.content_language.as_ref(),
            })?;
            Some((i.content_type.clone(), m))
        }
        None | Some(MetadataDirective::COPY) => {
            if src.id == dst.id && **src_key == *i.key {
                return Err(s3_error!(InvalidRequest, "copying an object onto itself needs the REPLACE metadata directive"));
            }
            None
        }
        Some(other) => return Err(s3_error!(InvalidArgument, "unknown metadata directive {other}")),
    };
    let if_match = i.copy_source_if_match.as_ref().and_then(cond_etag).filter(|e| e != "*");
    let row = s.site.copy_object(&src, src_key, &dst, &i.key, replace, if_match).await.map_err(store_err)?;
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult { e_tag: Some(etag(&row)), last_modified: Some(ts(row.modified_ms)), ..Default::default() }),
        ..Default::default()
    }))
}

pub(super) async fn create_multipart_upload(s: &CloudletS3, req: S3Request<CreateMultipartUploadInput>) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let i = &req.input;
    let (_, b) = s.bucket(&req, &i.bucket, Access::Write).await?;
    validate_key(&i.key).map_err(store_err)?;
    let meta = meta_in(MetaIn {
        user: i.metadata.as_ref(),
        cache_control: i.cache_control.as_ref(),
        content_disposition: i.content_disposition.as_ref(),
        content_encoding: i.content_encoding.as_ref(),
        content_language: i.content_language.as_ref(),
    })?;
    let id = s.site.create_upload(&b, &i.key, i.content_type.clone(), meta).await.map_err(store_err)?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(i.bucket.clone()),
        key: Some(i.key.clone()),
        upload_id: Some(id),
        checksum_algorithm: i.checksum_algorithm.clone(),
        ..Default::default()
    }))
}

pub(super) async fn upload_part(s: &CloudletS3, mut req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
    let (_, b) = s.bucket(&req, &req.input.bucket, Access::Write).await?;
    let i = &req.input;
    s.site.get_upload(&b, &i.key, &i.upload_id).await.map_err(store_err)?;
    let c = Checksums {
        crc32: i.checksum_crc32.clone(),
        crc32c: i.checksum_crc32c.clone(),
        crc64nvme: i.checksum_crc64nvme.clone(),
        sha1: i.checksum_sha1.clone(),
        sha256: i.checksum_sha256.clone(),
    };
    let g = given(&req.headers, i.checksum_algorithm.as_ref(), c, i.content_md5.as_ref());
    let (key, upload, number) = (i.key.clone(), i.upload_id.clone(), i.part_number);
    if !(1..=crate::site::objects::MAX_PARTS).contains(&i64::from(number)) {
        return Err(s3_error!(InvalidArgument, "part numbers run from 1 to {}", crate::site::objects::MAX_PARTS));
    }
    let len = i.content_length;
    let w = receive(s, &b, None, (&req.headers, len), req.input.body.take(), &g, req.trailing_headers.as_ref()).await?;
    let sums = w.checksums.clone();
    let e = s.site.commit_part(&b, &key, &upload, number as i64, &w).await.map_err(store_err)?;
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(ETag::Strong(e)),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        ..Default::default()
    }))
}

pub(super) async fn complete_multipart_upload(
    s: &CloudletS3,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let i = &req.input;
    let (_, b) = s.bucket(&req, &i.bucket, Access::Write).await?;
    let mut parts = Vec::new();
    for p in i.multipart_upload.as_ref().and_then(|m| m.parts.as_ref()).into_iter().flatten() {
        let (Some(n), Some(e)) = (p.part_number, p.e_tag.as_ref()) else {
            return Err(s3_error!(InvalidPart, "every part needs a PartNumber and an ETag"));
        };
        parts.push((n as i64, e.value().to_string()));
    }
    let cond = WriteCond { if_match: i.if_match.as_ref().and_then(cond_etag), if_none_match_any: i.if_none_match.as_ref().is_some_and(ETagCondition::is_any) };
    let row = s.site.complete_upload(&b, &i.key, &i.upload_id, parts, cond).await.map_err(store_err)?;
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(i.bucket.clone()),
        key: Some(i.key.clone()),
        e_tag: Some(etag(&row)),
        location: Some(format!("/{}/{}", i.bucket, i.key)),
        ..Default::default()
    }))
}

pub(super) async fn list_multipart_uploads(s: &CloudletS3, req: S3Request<ListMultipartUploadsInput>) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let i = &req.input;
    // Uploads in progress are the writers' business: public-read covers finished objects only.
    s.signed(&req).await?;
    let (_, b) = s.bucket(&req, &i.bucket, Access::Read).await?;
    let max = i.max_uploads.map_or(MAX_KEYS, |n| (n.max(0) as usize).min(MAX_KEYS));
    // Without an upload-id marker, listing starts after every upload of the key marker ("~"
    // sorts after any ULID).
    let after = i.key_marker.clone().map(|k| (k, i.upload_id_marker.clone().unwrap_or_else(|| "~".into())));
    let mut ups = s.site.list_uploads(&b, i.prefix.as_deref().unwrap_or(""), after, max + 1).await.map_err(store_err)?;
    let truncated = max > 0 && ups.len() > max;
    ups.truncate(max);
    let last = ups.last().map(|u| (u.key.clone(), u.id.clone()));
    let enc = encoder(i.encoding_type.as_ref());
    let uploads = ups
        .into_iter()
        .map(|u| MultipartUpload {
            key: Some(enc(&u.key)),
            upload_id: Some(u.id),
            initiated: Some(ts(u.initiated_ms)),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        })
        .collect();
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(i.bucket.clone()),
        prefix: i.prefix.clone(),
        key_marker: i.key_marker.clone(),
        upload_id_marker: i.upload_id_marker.clone(),
        max_uploads: Some(max as i32),
        is_truncated: Some(truncated),
        next_key_marker: last.as_ref().filter(|_| truncated).map(|l| enc(&l.0)),
        next_upload_id_marker: last.filter(|_| truncated).map(|l| l.1),
        uploads: Some(uploads),
        ..Default::default()
    }))
}

pub(super) async fn list_parts(s: &CloudletS3, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
    let i = &req.input;
    s.signed(&req).await?;
    let (_, b) = s.bucket(&req, &i.bucket, Access::Read).await?;
    let max = i.max_parts.map_or(MAX_KEYS, |n| (n.max(0) as usize).min(MAX_KEYS));
    let after = i64::from(i.part_number_marker.unwrap_or(0).max(0));
    let mut parts = s.site.list_parts(&b, &i.key, &i.upload_id, after, max + 1).await.map_err(store_err)?;
    let truncated = max > 0 && parts.len() > max;
    parts.truncate(max);
    let next = parts.last().filter(|_| truncated).map(|p| p.number as i32);
    let parts = parts
        .into_iter()
        .map(|p| {
            let c: Checksums = serde_json::from_str(&p.checksums).unwrap_or_default();
            Part {
                part_number: Some(p.number as i32),
                e_tag: Some(ETag::Strong(p.etag)),
                size: Some(p.size),
                last_modified: Some(ts(p.modified_ms)),
                checksum_crc32: c.crc32,
                checksum_crc32c: c.crc32c,
                checksum_crc64nvme: c.crc64nvme,
                checksum_sha1: c.sha1,
                checksum_sha256: c.sha256,
            }
        })
        .collect();
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(i.bucket.clone()),
        key: Some(i.key.clone()),
        upload_id: Some(i.upload_id.clone()),
        part_number_marker: i.part_number_marker,
        next_part_number_marker: next,
        max_parts: Some(max as i32),
        is_truncated: Some(truncated),
        parts: Some(parts),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_slashes_and_unreserved() {
        assert_eq!(url_encode("a b/c+d~é"), "a%20b/c%2Bd~%C3%A9");
    }

    #[test]
    fn continuation_tokens_round_trip() {
        assert_eq!(token_decode(&token_encode("docs/x y")).unwrap(), "docs/x y");
        assert!(token_decode("%%%").is_err());
    }
}
