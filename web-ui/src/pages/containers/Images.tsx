// Images: pulled from a registry (a long-running operation whose progress is
// shown until it ends) or uploaded as an archive (an OCI image layout or
// `docker save` output), listed with their digest, size and what they run.
import { useRef, useState, type FormEvent } from "react";
import { api, seg, type ImageResource, type OperationResource, type OperationStatus } from "../../api";
import { formatBytes, formatTime } from "../../format";
import { useI18n } from "../../i18n";
import { Notice, PhaseBadge, useInterval } from "../../components/ui";
import { CreateButton, Field, Mono, NameField, ResourceRow, ResourceSection, useMutation } from "../network/shared";
import { nameFromFile, shortDigest, type Ctx } from "./shared";

/** A pull being watched: the operation and the image it makes. */
interface Pull {
  op: string;
  image: string;
  status?: OperationStatus;
}

const DONE = ["Succeeded", "Failed"];

export function ImageSection({ ctx }: { ctx: Ctx }) {
  const { t, lang } = useI18n();
  const m = useMutation();
  const query = { query: ctx.scope };
  const [name, setName] = useState("");
  const [source, setSource] = useState("");
  const [insecure, setInsecure] = useState(false);
  const [pull, setPull] = useState<Pull | null>(null);
  const [importName, setImportName] = useState("");
  const [file, setFile] = useState<File | null>(null);
  const [active, setActive] = useState<"pull" | "upload" | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const fileInput = useRef<HTMLInputElement>(null);
  const polling = useRef(false);

  // Follow the pull's operation until it succeeds or fails.
  const watch = (p: Pull) => {
    const phase = p.status?.phase ?? "";
    if (!DONE.includes(phase)) {
      setPull(p);
      return;
    }
    setPull(null);
    ctx.reload.images();
    if (phase === "Succeeded") setNotice(t("containers.pullDone", { name: p.image }));
    else m.setError(new Error(t("containers.pullFailed", { name: p.image, message: p.status?.error?.message ?? phase })));
  };
  useInterval(() => {
    if (!pull || polling.current) return;
    polling.current = true;
    api
      .get<OperationResource>(`/v1/operations/${seg(pull.op)}`)
      .then(
        (op) => watch({ ...pull, status: op.status as OperationStatus | undefined }),
        (err: unknown) => {
          setPull(null);
          m.setError(err);
        },
      )
      .finally(() => {
        polling.current = false;
      });
  }, 1000);

  const startPull = async (e: FormEvent) => {
    e.preventDefault();
    setNotice(null);
    const image = name.trim();
    let op: OperationResource | undefined;
    const body = { name: image, spec: { source: source.trim(), insecure } };
    setActive("pull");
    const ok = await m.run(async () => {
      op = await api.post<OperationResource>("/v1/images", body, query);
    }, ctx.reload.images);
    setActive(null);
    if (!ok) return;
    setName("");
    setSource("");
    if (op?.id) watch({ op: op.id, image, status: op.status as OperationStatus | undefined });
  };

  const chooseFile = (f: File | null) => {
    setFile(f);
    if (f && !importName.trim()) setImportName(nameFromFile(f.name));
  };

  const upload = async (e: FormEvent) => {
    e.preventDefault();
    setNotice(null);
    if (!file) {
      m.setError(new Error(t("containers.noFile")));
      return;
    }
    const image = importName.trim();
    setActive("upload");
    const ok = await m.run(
      () => api.upload("/v1/images/import", file, "application/x-tar", { query: { ...ctx.scope, name: image } }),
      ctx.reload.images,
    );
    setActive(null);
    if (!ok) return;
    setNotice(t("containers.uploaded", { name: image }));
    setImportName("");
    setFile(null);
    if (fileInput.current) fileInput.current.value = "";
  };

  const remove = (img: ImageResource) => {
    setNotice(null);
    void m.run(() => api.del(`/v1/images/${seg(img.id)}`, query), ctx.reload.images);
  };

  const progress = pull?.status?.progress;
  const items = ctx.images;

  return (
    <ResourceSection
      kind="image"
      title={t("containers.images")}
      res={{ m, items, loaded: ctx.loads.images }}
      ctx={ctx}
      head={[t("common.name"), t("containers.source"), t("common.phase"), t("containers.digest"), t("containers.size"), t("containers.runs"), t("common.created")]}
      note={t("containers.imageNote")}
      form={
        <div className="net-form-stack">
          {notice ? <Notice onDismiss={() => setNotice(null)}>{notice}</Notice> : null}
          {pull ? (
            <Notice>
              <span data-testid="image-pull-progress">
                {t("containers.pullProgress", { name: pull.image, progress: typeof progress === "number" ? progress : 0 })}
              </span>
            </Notice>
          ) : null}
          <h3 className="subsection-title ctr-form-title">{t("containers.pullFrom")}</h3>
          <form className="form-row" onSubmit={startPull} data-testid="image-pull-form">
            <NameField value={name} onChange={setName} placeholder="web" testId="image-name" />
            <Field label={t("containers.source")} grow>
              <input
                value={source}
                onChange={(e) => setSource(e.target.value)}
                required
                placeholder="127.0.0.1:5000/repo:tag"
                data-testid="image-source"
              />
            </Field>
            <label className="net-check ctr-check">
              <input type="checkbox" checked={insecure} onChange={(e) => setInsecure(e.target.checked)} data-testid="image-insecure" />
              {t("containers.insecure")}
            </label>
            <CreateButton
              busy={active === "pull"}
              disabled={m.busy || !!pull}
              testId="image-pull"
              label={t("containers.pull")}
              busyLabel={t("containers.pulling")}
            />
          </form>
          <h3 className="subsection-title ctr-form-title">{t("containers.importFrom")}</h3>
          <form className="form-row" onSubmit={upload} data-testid="image-import-form">
            <Field label={t("common.name")}>
              <input
                value={importName}
                onChange={(e) => setImportName(e.target.value)}
                required
                placeholder="httpd"
                data-testid="image-import-name"
              />
            </Field>
            {/* The native file input is hidden so that its button and text follow the console's language. */}
            <Field label={t("containers.file")} grow>
              <input
                ref={fileInput}
                type="file"
                accept=".tar,application/x-tar"
                onChange={(e) => chooseFile(e.target.files?.[0] ?? null)}
                className="visually-hidden ctr-file-input"
                data-testid="image-import-file"
              />
              <span className="ctr-file">
                <span className="ctr-file-button">{t("containers.chooseFile")}</span>
                <span className={file ? "ctr-file-name" : "ctr-file-name muted"} data-testid="image-import-file-name">
                  {file ? `${file.name} (${formatBytes(file.size)})` : t("containers.noFileChosen")}
                </span>
              </span>
            </Field>
            <CreateButton
              busy={active === "upload"}
              disabled={m.busy || !file}
              testId="image-import"
              label={t("containers.upload")}
              busyLabel={t("containers.uploading")}
            />
          </form>
        </div>
      }
    >
      {items.map((img) => (
        <ImageRow key={img.id} img={img} ctx={ctx} busy={m.busy} lang={lang} onRemove={() => remove(img)} />
      ))}
    </ResourceSection>
  );
}

function ImageRow({ img, ctx, busy, lang, onRemove }: {
  img: ImageResource;
  ctx: Ctx;
  busy: boolean;
  lang: ReturnType<typeof useI18n>["lang"];
  onRemove: () => void;
}) {
  const { t } = useI18n();
  const st = img.status;
  const config = st?.config;
  const runs = [...(config?.entrypoint ?? []), ...(config?.cmd ?? [])].join(" ");
  return (
    <ResourceRow kind="image" item={img} ctx={ctx} busy={busy} onDelete={onRemove}>
      <td className="name-cell">{img.name}</td>
      <td className={img.spec?.source ? "ctr-wrap" : "nowrap"}>
        {img.spec?.source ? <Mono>{img.spec.source}</Mono> : <span className="muted">{t("containers.uploadedSource")}</span>}
      </td>
      <td>
        <PhaseBadge phase={st?.phase} testId="image-phase" />
        {st?.phase === "Failed" && st.message ? <div className="muted small ctr-message">{st.message}</div> : null}
      </td>
      <td>
        <span title={st?.digest}>
          <Mono>{shortDigest(st?.digest)}</Mono>
        </span>
      </td>
      <td className="nowrap">{st?.size_bytes !== undefined ? formatBytes(st.size_bytes) : <span className="muted">—</span>}</td>
      <td className="ctr-wrap">
        <Mono>{runs}</Mono>
      </td>
      <td className="nowrap">{formatTime(img.created_at, lang)}</td>
    </ResourceRow>
  );
}
