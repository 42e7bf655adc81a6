// The object browser's forms: upload a file into the current prefix (its key is
// the prefix plus the file's name; the file's type is stored as the object's
// Content-Type), and open a new folder below it.
import { useRef, useState, type FormEvent } from "react";
import { api, seg, type BucketResource, type ObjectEntry } from "../../api";
import { formatBytes } from "../../format";
import { useI18n } from "../../i18n";
import { CreateButton, Field, type Mutation } from "../network/shared";
import { folderPrefix, type Ctx } from "./shared";

export function UploadForms({ ctx, bucket, prefix, m, onUploaded, onOpenFolder, onNotice }: {
  ctx: Ctx;
  bucket: BucketResource;
  prefix: string;
  m: Mutation;
  onUploaded: (o: ObjectEntry) => void;
  /** Opens `folder` (ending with "/") below the current prefix. */
  onOpenFolder: (folder: string) => void;
  onNotice: (text: string | null) => void;
}) {
  const { t } = useI18n();
  const [file, setFile] = useState<File | null>(null);
  const [uploading, setUploading] = useState(false);
  const [folder, setFolder] = useState("");
  const fileInput = useRef<HTMLInputElement>(null);

  const upload = async (e: FormEvent) => {
    e.preventDefault();
    onNotice(null);
    if (!file) {
      m.setError(new Error(t("objects.noFile")));
      return;
    }
    const key = prefix + file.name;
    let made: ObjectEntry | undefined;
    setUploading(true);
    const ok = await m.run(async () => {
      made = await api.put<ObjectEntry>(`/v1/buckets/${seg(bucket.id)}/object`, file, file.type || "application/octet-stream", {
        query: { ...ctx.scope, key },
      });
    });
    setUploading(false);
    if (!ok) return;
    setFile(null);
    if (fileInput.current) fileInput.current.value = "";
    onUploaded(made ?? { key, size: file.size, etag: "", last_modified: "" });
  };

  const openFolder = (e: FormEvent) => {
    e.preventDefault();
    const next = folderPrefix(folder);
    if (!next) {
      m.setError(new Error(t("objects.badFolder")));
      return;
    }
    setFolder("");
    onOpenFolder(next);
  };

  const where = prefix || "/";
  return (
    <div className="obj-forms">
      <form className="form-row" onSubmit={upload} data-testid="object-upload-form">
        {/* The native file input is hidden so that its button and text follow the console's language. */}
        <Field label={t("objects.uploadTo", { prefix: where })} grow>
          <input
            ref={fileInput}
            type="file"
            onChange={(e) => setFile(e.target.files?.[0] ?? null)}
            className="visually-hidden ctr-file-input"
            data-testid="object-upload-file"
          />
          <span className="ctr-file">
            <span className="ctr-file-button">{t("objects.chooseFile")}</span>
            <span className={file ? "ctr-file-name" : "ctr-file-name muted"} data-testid="object-upload-file-name">
              {file ? `${file.name} (${formatBytes(file.size)})` : t("objects.noFileChosen")}
            </span>
          </span>
        </Field>
        <CreateButton busy={uploading} disabled={m.busy || !file} testId="object-upload"
          label={t("objects.upload")} busyLabel={t("objects.uploading")} />
      </form>
      <form className="form-row" onSubmit={openFolder} data-testid="object-folder-form">
        <Field label={t("objects.newFolder")}>
          <input value={folder} onChange={(e) => setFolder(e.target.value)} size={16} placeholder="docs"
            data-testid="object-folder-name" />
        </Field>
        <button type="submit" className="btn btn-secondary" disabled={!folder.trim()} data-testid="object-folder-open">
          {t("objects.openFolder")}
        </button>
      </form>
      <p className="muted small obj-note">{t("objects.uploadNote")}</p>
    </div>
  );
}
