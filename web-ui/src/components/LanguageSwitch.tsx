import { LANGS, useI18n, type Lang, type MessageKey } from "../i18n";

export function LanguageSwitch() {
  const { lang, setLang, t } = useI18n();
  return (
    <label className="lang-switch">
      <span className="visually-hidden">{t("header.language")}</span>
      <span aria-hidden="true" className="lang-icon">
        文/A
      </span>
      <select
        data-testid="lang-switch"
        aria-label={t("header.language")}
        value={lang}
        onChange={(e) => setLang(e.target.value as Lang)}
      >
        {LANGS.map((l) => (
          <option key={l} value={l}>
            {t(`lang.${l}` as MessageKey)}
          </option>
        ))}
      </select>
    </label>
  );
}
