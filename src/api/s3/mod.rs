//! The S3-compatible endpoint: the `s3s` crate speaks the protocol (routing, XML, SigV4 with
//! presigned URLs and aws-chunked bodies), and this module maps each operation onto the site's
//! buckets and objects ([`crate::site::objects`]).
//!
//! Requests are path-style (`/BUCKET/KEY`). A signed request acts as its access key's project
//! and role; an unsigned one may only read `public-read` buckets. Errors are S3 error codes in
//! S3's XML (<https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html>).

mod ops;

use axum::body::Body as AxumBody;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::*;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use tower::ServiceExt as _;

use crate::site::auth::Principal;
use crate::site::buckets::{Access, BucketPolicy, BucketRef, BucketSpec};
use crate::site::objects::StoreError;
use crate::site::{Site, SiteError};

/// Principals resolved by the signature check moments ago, so the operation that follows does
/// not look its key up again. Entries live [`RECENT_TTL`]; every request's signature check still
/// reads the key from the database, so a revoked key fails at once.
type Recent = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (Principal, std::time::Instant)>>>;
const RECENT_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// The S3 protocol adapter over a site.
#[derive(Clone)]
pub struct CloudletS3 {
    site: Site,
    recent: Recent,
}

struct Keys(Site, Recent);

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let (site, id) = (self.0.clone(), access_key.to_string());
        match site.run(move |s| s.access_key(&id)).await {
            Ok((secret, p)) => {
                if let Ok(mut m) = self.1.lock() {
                    if m.len() > 1024 {
                        m.retain(|_, (_, t)| t.elapsed() < RECENT_TTL);
                    }
                    m.insert(access_key.to_string(), (p, std::time::Instant::now()));
                }
                Ok(SecretKey::from(secret))
            }
            Err(SiteError::Unauthenticated(_)) => Err(s3_error!(InvalidAccessKeyId, "the access key id does not exist")),
            Err(e) => Err(internal(e)),
        }
    }
}

/// Authorization happens per operation (it needs the bucket), so the access hook lets every
/// request through, including anonymous ones.
struct Open;

#[async_trait::async_trait]
impl s3s::access::S3Access for Open {
    async fn check(&self, _cx: &mut s3s::access::S3AccessContext<'_>) -> S3Result<()> {
        Ok(())
    }
}

/// Build the S3 service for `site`.
pub fn service(site: Site) -> S3Service {
    let recent = Recent::default();
    let mut b = S3ServiceBuilder::new(CloudletS3 { site: site.clone(), recent: recent.clone() });
    b.set_auth(Keys(site, recent));
    b.set_access(Open);
    b.build()
}

/// Serve one HTTP request with the S3 service (an axum fallback handler).
/// The longest presigned URL lifetime AWS accepts (`X-Amz-Expires`, seconds: 7 days).
pub const MAX_PRESIGNED_SECONDS: u64 = 604_800;
/// How far a Signature Version 2 request's `Date` may be from the server's clock (AWS: 15 min).
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 900;

/// Bound the freshness of signatures before s3s checks them, as AWS does: a Signature Version 2
/// header (`Authorization: AWS …`) needs a `Date` (or `x-amz-date`) within 15 minutes of the
/// server's clock (403 `RequestTimeTooSkewed`); a presigned URL, Version 2 (`Expires`, a Unix
/// time) or 4 (`X-Amz-Expires`, seconds), may be valid for at most [`MAX_PRESIGNED_SECONDS`]
/// (400 `AuthorizationQueryParametersError`). Version 2 stays accepted within these bounds
/// because common clients (boto3's default presigned URLs) still make it. The answer is S3's
/// XML error document.
pub fn refuse_stale_auth(req: &Request) -> Option<Response> {
    let now = chrono::Utc::now().timestamp();
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let header_v2 = header("authorization").is_some_and(|v| v.starts_with("AWS "));
    let query: Vec<(String, String)> = req.uri().query().map(url_pairs).unwrap_or_default();
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let refuse = |status: axum::http::StatusCode, code: &str, message: &str| {
        let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>");
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/xml"));
        Some(resp)
    };
    if header_v2 {
        let date = header("x-amz-date").or_else(|| header("date")).and_then(http_date);
        if date.is_none_or(|t| (t - now).abs() > MAX_CLOCK_SKEW_SECONDS) {
            return refuse(
                axum::http::StatusCode::FORBIDDEN,
                "RequestTimeTooSkewed",
                "The difference between the request time and the server's time is too large.",
            );
        }
    }
    if get("AWSAccessKeyId").is_some() && get("Signature").is_some() {
        let expires = get("Expires").and_then(|v| v.parse::<i64>().ok());
        if expires.is_none_or(|e| e - now > MAX_PRESIGNED_SECONDS as i64) {
            return refuse(
                axum::http::StatusCode::BAD_REQUEST,
                "AuthorizationQueryParametersError",
                "Expires must be a Unix time at most 7 days (604800 seconds) from now",
            );
        }
    }
    if let Some(v) = get("X-Amz-Expires")
        && v.parse::<u64>().map_or(true, |s| s > MAX_PRESIGNED_SECONDS)
    {
        return refuse(
            axum::http::StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
            "X-Amz-Expires must be less than a week (in seconds) that is; 604800 seconds",
        );
    }
    None
}

/// A Unix time from an HTTP date (RFC 7231 IMF-fixdate, as RFC 2822) or an ISO 8601 basic
/// timestamp (`20260101T000000Z`).
fn http_date(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(s)
        .map(|t| t.timestamp())
        .ok()
        .or_else(|| chrono::NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ").ok().map(|t| t.and_utc().timestamp()))
}

/// The query's `name=value` pairs, percent-decoded (names only need to match exactly).
fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%' && i + 2 < b.len()).then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())).flatten();
        match (hex, b[i]) {
            (Some(v), _) => {
                out.push(v);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, c) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub async fn handle(svc: S3Service, req: Request) -> Response {
    if let Some(refused) = refuse_stale_auth(&req) {
        return refused;
    }
    // A client that sent `Expect: 100-continue` withholds the body when the answer is final
    // (an error before the body was read). The connection must then close: keeping it would
    // make the server read the client's next request as the unsent body.
    let expects_continue = req.headers().get(axum::http::header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    match svc.oneshot(req).await {
        Ok(resp) => {
            let mut resp = resp.map(AxumBody::new).into_response();
            if expects_continue && !resp.status().is_success() {
                resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
            }
            resp
        }
        Err(e) => {
            tracing::error!(error = ?e, "S3 request failed");
            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn internal(e: impl std::fmt::Display) -> S3Error {
    tracing::error!(error = %e, "S3 operation failed");
    S3Error::with_message(S3ErrorCode::InternalError, "internal error")
}

/// Map an object store error to its S3 error code.
pub(crate) fn store_err(e: StoreError) -> S3Error {
    use S3ErrorCode as C;
    let m = e.to_string();
    match e {
        StoreError::NoSuchBucket(_) => S3Error::with_message(C::NoSuchBucket, m),
        StoreError::NoSuchKey => S3Error::with_message(C::NoSuchKey, m),
        StoreError::NoSuchUpload => S3Error::with_message(C::NoSuchUpload, m),
        StoreError::AccessDenied(_) => S3Error::with_message(C::AccessDenied, m),
        StoreError::InvalidPart(_) => S3Error::with_message(C::InvalidPart, m),
        StoreError::InvalidPartOrder => S3Error::with_message(C::InvalidPartOrder, m),
        StoreError::EntityTooSmall(_) => S3Error::with_message(C::EntityTooSmall, m),
        StoreError::EntityTooLarge(_) => S3Error::with_message(C::EntityTooLarge, m),
        StoreError::BadDigest(_) => S3Error::with_message(C::BadDigest, m),
        StoreError::PreconditionFailed => S3Error::with_message(C::PreconditionFailed, m),
        StoreError::NotModified => S3Error::new(C::NotModified),
        StoreError::InvalidRange(_) => S3Error::with_message(C::InvalidRange, m),
        StoreError::QuotaExceeded(_) => {
            // Ceph RGW's code for the same condition; 403 as there.
            let mut err = S3Error::with_message(C::Custom("QuotaExceeded".into()), m);
            err.set_status_code(axum::http::StatusCode::FORBIDDEN);
            err
        }
        StoreError::InvalidArgument(_) => S3Error::with_message(C::InvalidArgument, m),
        StoreError::IncompleteBody(_) => S3Error::with_message(C::IncompleteBody, m),
        StoreError::Site(SiteError::AlreadyExists { .. }) => S3Error::with_message(C::BucketAlreadyExists, m),
        StoreError::Site(SiteError::Invalid { field, message }) => S3Error::with_message(C::InvalidArgument, format!("{field}: {message}")),
        StoreError::Site(SiteError::QuotaExceeded { kind, limit }) => {
            let mut err = S3Error::with_message(C::Custom("QuotaExceeded".into()), format!("the project may have at most {limit} {kind}"));
            err.set_status_code(axum::http::StatusCode::FORBIDDEN);
            err
        }
        StoreError::Site(SiteError::Conflict(msg)) => S3Error::with_message(C::BucketNotEmpty, msg),
        StoreError::Site(SiteError::Forbidden(msg)) => S3Error::with_message(C::AccessDenied, msg),
        other => internal(other),
    }
}

impl CloudletS3 {
    /// The principal of a signed request (none for anonymous).
    async fn caller<T>(&self, req: &S3Request<T>) -> S3Result<Option<Principal>> {
        let Some(c) = &req.credentials else { return Ok(None) };
        if let Ok(m) = self.recent.lock()
            && let Some((p, t)) = m.get(&c.access_key)
            && t.elapsed() < RECENT_TTL
        {
            return Ok(Some(p.clone()));
        }
        let id = c.access_key.clone();
        match self.site.run(move |s| s.access_key(&id)).await {
            Ok((_, p)) => Ok(Some(p)),
            Err(SiteError::Unauthenticated(_)) => Err(s3_error!(InvalidAccessKeyId)),
            Err(e) => Err(internal(e)),
        }
    }

    /// Find a bucket and check the caller's access.
    async fn bucket<T>(&self, req: &S3Request<T>, name: &str, access: Access) -> S3Result<(Option<Principal>, BucketRef)> {
        let caller = self.caller(req).await?;
        let (c2, n) = (caller.clone(), name.to_string());
        let b = self.site.run(move |s| Ok(s.authorize_bucket(c2.as_ref(), &n, access))).await.map_err(internal)?.map_err(|e| store_err(e.into()))?;
        Ok((caller, b))
    }

    async fn signed<T>(&self, req: &S3Request<T>) -> S3Result<Principal> {
        self.caller(req).await?.ok_or_else(|| s3_error!(AccessDenied, "this request must be signed"))
    }
}

fn owner(p: &Principal) -> Owner {
    Owner { display_name: Some(p.project.clone()), id: Some(p.project_id.clone()) }
}

#[async_trait::async_trait]
impl S3 for CloudletS3 {
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let p = self.signed(&req).await?;
        let p2 = p.clone();
        let all = self.site.run(move |s| s.buckets_of(&p2)).await.map_err(internal)?;
        let prefix = req.input.prefix.clone().unwrap_or_default();
        let buckets = all
            .into_iter()
            .filter(|b| b.name.starts_with(&prefix))
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: chrono::DateTime::parse_from_rfc3339(&b.created_at).ok().map(|t| Timestamp::from(std::time::SystemTime::from(t))),
                bucket_region: Some(self.site.config().s3.region.clone()),
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(buckets), owner: Some(owner(&p)), ..Default::default() }))
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let p = self.signed(&req).await?;
        p.require(crate::site::auth::Role::Member).map_err(|e| s3_error!(AccessDenied, "{e}"))?;
        let name = req.input.bucket.clone();
        let policy = match req.input.acl.as_ref().map(|a| a.as_str()) {
            None | Some(BucketCannedACL::PRIVATE) => BucketPolicy::Private,
            Some(BucketCannedACL::PUBLIC_READ) => BucketPolicy::PublicRead,
            Some(other) => return Err(s3_error!(InvalidArgument, "canned ACL {other} is not supported; use private or public-read")),
        };
        let (pc, n) = (p.project_ctx(), name.clone());
        let spec = serde_json::to_value(BucketSpec { policy, quota_mib: None }).map_err(internal)?;
        let r = self.site.run(move |s| s.create_resource::<BucketSpec>(&pc, &n, &Default::default(), spec)).await;
        match r {
            Ok(_) => Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{name}")) })),
            Err(SiteError::AlreadyExists { .. }) => {
                let mine = self.site.run(move |s| s.read(|c| crate::site::buckets::bucket_by_name(c, &name))).await.map_err(internal)?;
                match mine {
                    Some(b) if b.project.id == p.project_id => Err(s3_error!(BucketAlreadyOwnedByYou)),
                    _ => Err(s3_error!(BucketAlreadyExists)),
                }
            }
            Err(SiteError::Invalid { message, .. }) => Err(S3Error::with_message(S3ErrorCode::InvalidBucketName, message)),
            Err(e) => Err(store_err(e.into())),
        }
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket(&req, &req.input.bucket, Access::Read).await?;
        Ok(S3Response::new(HeadBucketOutput { bucket_region: Some(self.site.config().s3.region.clone()), ..Default::default() }))
    }

    async fn get_bucket_location(&self, req: S3Request<GetBucketLocationInput>) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.bucket(&req, &req.input.bucket, Access::Read).await?;
        let region = self.site.config().s3.region.clone();
        let location_constraint = (region != "us-east-1").then(|| BucketLocationConstraint::from(region));
        Ok(S3Response::new(GetBucketLocationOutput { location_constraint }))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let (_, b) = self.bucket(&req, &req.input.bucket, Access::Write).await?;
        let (pc, id) = (b.project.clone(), b.id.clone());
        match self.site.run(move |s| s.delete_resource::<BucketSpec>(&pc, &id)).await {
            Ok(_) => Ok(S3Response::new(DeleteBucketOutput {})),
            Err(SiteError::Conflict(m)) => Err(S3Error::with_message(S3ErrorCode::BucketNotEmpty, m)),
            Err(e) => Err(store_err(e.into())),
        }
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        ops::list_objects_v2(self, req).await
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        ops::list_objects_v1(self, req).await
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        ops::put_object(self, req).await
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        ops::get_object(self, req).await
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        ops::head_object(self, req).await
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let (_, b) = self.bucket(&req, &req.input.bucket, Access::Write).await?;
        let if_match = req.input.if_match.as_ref().and_then(ops::cond_etag);
        self.site.delete_object(&b, &req.input.key, if_match).await.map_err(store_err)?;
        Ok(S3Response::with_status(DeleteObjectOutput::default(), axum::http::StatusCode::NO_CONTENT))
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let (_, b) = self.bucket(&req, &req.input.bucket, Access::Write).await?;
        if req.input.delete.objects.len() > 1000 {
            return Err(s3_error!(MalformedXML, "at most 1000 keys per request"));
        }
        let quiet = req.input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for o in &req.input.delete.objects {
            match self.site.delete_object(&b, &o.key, None).await {
                Ok(_) if quiet => {}
                Ok(_) => deleted.push(DeletedObject { key: Some(o.key.clone()), ..Default::default() }),
                Err(e) => {
                    let e = store_err(e);
                    errors.push(Error {
                        code: Some(e.code().as_str().to_string()),
                        key: Some(o.key.clone()),
                        message: e.message().map(str::to_string),
                        version_id: None,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput { deleted: Some(deleted), errors: Some(errors), ..Default::default() }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        ops::copy_object(self, req).await
    }

    async fn create_multipart_upload(&self, req: S3Request<CreateMultipartUploadInput>) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        ops::create_multipart_upload(self, req).await
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        ops::upload_part(self, req).await
    }

    async fn complete_multipart_upload(&self, req: S3Request<CompleteMultipartUploadInput>) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        ops::complete_multipart_upload(self, req).await
    }

    async fn abort_multipart_upload(&self, req: S3Request<AbortMultipartUploadInput>) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let (_, b) = self.bucket(&req, &req.input.bucket, Access::Write).await?;
        self.site.abort_upload(&b, &req.input.key, &req.input.upload_id).await.map_err(store_err)?;
        Ok(S3Response::with_status(AbortMultipartUploadOutput::default(), axum::http::StatusCode::NO_CONTENT))
    }

    async fn list_multipart_uploads(&self, req: S3Request<ListMultipartUploadsInput>) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        ops::list_multipart_uploads(self, req).await
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        ops::list_parts(self, req).await
    }
}

#[cfg(test)]
mod legacy_auth_tests {
    use super::*;

    fn req(uri: &str, auth: Option<&str>) -> Request {
        let mut b = axum::http::Request::builder().uri(uri);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    fn req_with(uri: &str, headers: &[(&str, String)]) -> Request {
        let mut b = axum::http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn stale_sigv2_and_week_long_presigned_urls_are_refused_and_fresh_ones_pass() {
        let now = chrono::Utc::now();
        let v2 = "AWS AKID:c2lnbmF0dXJl".to_string();
        let date = |t: chrono::DateTime<chrono::Utc>| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        assert!(
            refuse_stale_auth(&req_with("/b/k", &[("authorization", v2.clone()), ("date", "Mon, 01 Jan 2001 00:00:00 GMT".into())])).is_some(),
            "a 2001 date"
        );
        assert!(refuse_stale_auth(&req_with("/b/k", &[("authorization", v2.clone())])).is_some(), "no date");
        assert!(refuse_stale_auth(&req_with("/b/k", &[("authorization", v2.clone()), ("date", date(now))])).is_none(), "a fresh V2 request");
        assert!(refuse_stale_auth(&req_with("/b/k", &[("authorization", v2), ("x-amz-date", date(now - chrono::Duration::minutes(20)))])).is_some());
        let soon = now.timestamp() + 60;
        assert!(
            refuse_stale_auth(&req(&format!("/b/k?AWSAccessKeyId=AKID&Expires={soon}&Signature=abc%2B%3D"), None)).is_none(),
            "boto3's default presigned URL"
        );
        assert!(refuse_stale_auth(&req("/b/k?AWSAccessKeyId=AKID&Expires=4102444800&Signature=abc%2B%3D", None)).is_some(), "a presigned URL to 2100");
        assert!(refuse_stale_auth(&req("/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=604801&X-Amz-Signature=x", None)).is_some());
        assert!(refuse_stale_auth(&req("/b/k?X-Amz-Expires=bogus", None)).is_some());
        assert!(refuse_stale_auth(&req("/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=604800&X-Amz-Signature=x", None)).is_none());
        assert!(
            refuse_stale_auth(&req("/b/k", Some("AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x")))
                .is_none()
        );
        assert!(refuse_stale_auth(&req("/b?list-type=2&prefix=a%20b", None)).is_none());
        assert_eq!(percent_decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
    }
}
