// Inline SVG icons (no icon font, nothing fetched at run time).
const PATHS = {
  overview: "M3 3h6v8H3zM11 3h6v5h-6zM11 10h6v7h-6zM3 13h6v4H3z",
  projects: "M2 5.5A1.5 1.5 0 0 1 3.5 4H8l1.5 2h7A1.5 1.5 0 0 1 18 7.5v7a1.5 1.5 0 0 1-1.5 1.5h-13A1.5 1.5 0 0 1 2 14.5z",
  tokens: "M12.5 3a4.5 4.5 0 1 1-2.9 7.95L8 12.5V14H6.5v1.5H5V17H2v-3l5.55-5.55A4.5 4.5 0 0 1 12.5 3zm1 2.5a1 1 0 1 0 0 2 1 1 0 0 0 0-2z",
  audit: "M5 2h7l4 4v12H5zM12 2v4h4M7.5 9h6M7.5 12h6M7.5 15h4",
  network:
    "M8 4a2 2 0 1 0 4 0a2 2 0 1 0-4 0M2 16a2 2 0 1 0 4 0a2 2 0 1 0-4 0M14 16a2 2 0 1 0 4 0a2 2 0 1 0-4 0M10 6v4M4 14v-4h12v4",
  instances: "M3 3.5h14v9.5H3zM6.5 6.5l2.5 2-2.5 2M10.5 10.5h3M7 17h6M10 13v4",
  containers: "M10 2.5l6.5 3.5v8L10 17.5 3.5 14V6zM3.5 6L10 9.5 16.5 6M10 9.5v8",
  storage:
    "M3.5 5c0-1.4 2.9-2.5 6.5-2.5s6.5 1.1 6.5 2.5-2.9 2.5-6.5 2.5S3.5 6.4 3.5 5zM3.5 5v10c0 1.4 2.9 2.5 6.5 2.5s6.5-1.1 6.5-2.5V5M3.5 10c0 1.4 2.9 2.5 6.5 2.5s6.5-1.1 6.5-2.5",
  functions: "M7.5 3C5.5 3 5.5 4.5 5.5 6v1.5c0 1.2-.8 2.5-2.5 2.5 1.7 0 2.5 1.3 2.5 2.5V14c0 1.5 0 3 2 3M12.5 3c2 0 2 1.5 2 3v1.5c0 1.2.8 2.5 2.5 2.5-1.7 0-2.5 1.3-2.5 2.5V14c0 1.5 0 3-2 3",
  objects: "M3 5.5c0-1.4 3.1-2.5 7-2.5s7 1.1 7 2.5S13.9 8 10 8 3 6.9 3 5.5zM3 5.5l1.8 10.2c.2 1.1 2.5 1.8 5.2 1.8s5-.7 5.2-1.8L17 5.5",
} as const;

export type IconName = keyof typeof PATHS;

export function Icon({ name }: { name: IconName }) {
  const filled = name === "tokens";
  return (
    <svg
      className="icon"
      viewBox="0 0 20 20"
      width="18"
      height="18"
      aria-hidden="true"
      fill={filled ? "currentColor" : "none"}
      stroke={filled ? "none" : "currentColor"}
      strokeWidth="1.6"
      strokeLinejoin="round"
      strokeLinecap="round"
      fillRule="evenodd"
    >
      <path d={PATHS[name]} />
    </svg>
  );
}
