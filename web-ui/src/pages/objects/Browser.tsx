// The object browser of one bucket: the breadcrumb of the current prefix, its
// folders (common prefixes, "/" as the delimiter) and objects page by page,
// download links, delete, and (for writers) the upload and new-folder forms.
import { Fragment, useState } from "react";
import { api, seg, type BucketResource, type ObjectEntry } from "../../api";
import { formatBytes, formatNumber, formatRecent, formatTime } from "../../format";
import { useI18n } from "../../i18n";
import { Card, DeleteButton, ErrorBanner, Notice } from "../../components/ui";
import { useMutation } from "../network/shared";
import { UploadForms } from "./Upload";
import { useListing } from "./useListing";
import { baseName, crumbs, objectUrl, relativeTo, type Ctx } from "./shared";

export function ObjectBrowser({ ctx, bucket }: { ctx: Ctx; bucket: BucketResource }) {
  const { t, lang } = useI18n();
  const m = useMutation();
  const [prefix, setPrefixState] = useState("");
  const [notice, setNotice] = useState<string | null>(null);
  const listing = useListing(bucket.id, prefix, ctx.scope);

  const setPrefix = (next: string) => {
    setNotice(null);
    m.setError(null);
    setPrefixState(next);
  };

  const remove = async (o: ObjectEntry) => {
    setNotice(null);
    const query = { query: { ...ctx.scope, key: o.key } };
    if (await m.run(() => api.del(`/v1/buckets/${seg(bucket.id)}/object`, query), listing.reload)) {
      setNotice(t("objects.deleted", { key: o.key }));
    }
  };

  const usage =
    listing.count !== undefined ? (
      <span className="muted small" title={t("objects.usageTitle")} data-testid="bucket-usage"
        data-bytes={listing.bytes} data-count={listing.count}>
        {t("objects.usage", { count: formatNumber(listing.count, lang), size: formatBytes(listing.bytes) })}
      </span>
    ) : null;

  const empty = listing.objects.length === 0 && listing.prefixes.length === 0;

  return (
    <Card
      title={t("objects.objectsIn", { name: bucket.name })}
      actions={
        <>
          {usage}
          <button type="button" className="btn btn-secondary btn-small" onClick={listing.reload} data-testid="object-refresh">
            {t("common.refresh")}
          </button>
        </>
      }
      testId="object-card"
      className="net-card"
    >
      <div className="net-form-stack">
        <ErrorBanner error={m.error} onDismiss={() => m.setError(null)} />
        {listing.error ? <ErrorBanner error={listing.error} /> : null}
        {notice ? <Notice onDismiss={() => setNotice(null)}>{notice}</Notice> : null}
        <Breadcrumb bucket={bucket} prefix={prefix} onOpen={setPrefix} />
        {ctx.canWrite ? (
          <UploadForms
            ctx={ctx}
            bucket={bucket}
            prefix={prefix}
            m={m}
            onUploaded={(o) => {
              setNotice(t("objects.uploaded", { key: o.key, size: formatBytes(o.size) }));
              listing.reload();
            }}
            onOpenFolder={(folder) => setPrefix(prefix + folder)}
            onNotice={setNotice}
          />
        ) : null}
      </div>
      <div className="net-table">
        <table className="table" data-testid="object-table" data-prefix={prefix}>
          <thead>
            <tr>
              <th>{t("common.name")}</th>
              <th>{t("objects.size")}</th>
              <th>{t("objects.type")}</th>
              <th>{t("objects.modified")}</th>
              <th className="actions-col">{t("common.actions")}</th>
            </tr>
          </thead>
          <tbody>
            {listing.prefixes.map((p) => (
              <tr key={`p:${p}`} data-testid="object-folder-row" data-prefix={p}>
                <td className="name-cell">
                  <button type="button" className="obj-link obj-folder" onClick={() => setPrefix(p)} data-testid="object-folder">
                    {relativeTo(prefix, p)}
                  </button>
                </td>
                <td className="muted">—</td>
                <td className="muted">{t("objects.folder")}</td>
                <td className="muted">—</td>
                <td className="actions-col" />
              </tr>
            ))}
            {listing.objects.map((o) => (
              <tr key={`o:${o.key}`} data-testid="object-row" data-key={o.key}>
                <td className="name-cell obj-key">{relativeTo(prefix, o.key) || o.key}</td>
                <td className="nowrap" title={t("objects.bytes", { n: formatNumber(o.size, lang) })}>
                  <span data-testid="object-size" data-bytes={o.size}>
                    {formatBytes(o.size)}
                  </span>
                </td>
                <td className="muted small" data-testid="object-type">
                  {o.content_type || "—"}
                </td>
                <td className="nowrap">
                  <span title={formatTime(o.last_modified, lang)}>{formatRecent(o.last_modified, lang)}</span>
                </td>
                <td className="actions-col">
                  <span className="row-actions">
                    <a className="btn btn-secondary btn-small" href={objectUrl(bucket, o.key, ctx.scope)} download={baseName(o.key)}
                      data-testid="object-download">
                      {t("objects.download")}
                    </a>
                  </span>
                  {ctx.canWrite ? <DeleteButton onConfirm={() => void remove(o)} disabled={m.busy} testId="object-delete" /> : null}
                </td>
              </tr>
            ))}
            {empty ? (
              <tr>
                <td colSpan={5} className="muted empty-cell" data-testid="object-empty">
                  {listing.loading ? t("common.loading") : t("objects.emptyFolder")}
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      </div>
      {listing.next ? (
        <div className="obj-more">
          <button type="button" className="btn btn-secondary btn-small" disabled={listing.loading} onClick={listing.more}
            data-testid="object-more">
            {listing.loading ? t("common.loading") : t("objects.loadMore")}
          </button>
        </div>
      ) : null}
    </Card>
  );
}

/** The bucket's root, then one link per folder of the prefix; the last one is where we are. */
function Breadcrumb({ bucket, prefix, onOpen }: { bucket: BucketResource; prefix: string; onOpen: (prefix: string) => void }) {
  const { t } = useI18n();
  const parts = [{ label: bucket.name, prefix: "" }, ...crumbs(prefix)];
  return (
    <nav className="obj-crumbs" aria-label={t("objects.path")} data-testid="object-breadcrumb" data-prefix={prefix}>
      {parts.map((c, i) => (
        <Fragment key={c.prefix}>
          {i > 0 ? <span className="obj-sep" aria-hidden="true">/</span> : null}
          {i === parts.length - 1 ? (
            <strong aria-current="page" data-testid="object-crumb" data-prefix={c.prefix}>
              {c.label}
            </strong>
          ) : (
            <button type="button" className="obj-link" onClick={() => onOpen(c.prefix)} data-testid="object-crumb" data-prefix={c.prefix}>
              {c.label}
            </button>
          )}
        </Fragment>
      ))}
    </nav>
  );
}
