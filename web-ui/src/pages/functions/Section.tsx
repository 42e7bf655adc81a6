// A titled part of the function detail panel.
import type { ReactNode } from "react";

export function Section({ title, testId, actions, children }: {
  title: string;
  testId: string;
  actions?: ReactNode;
  children: ReactNode;
}) {
  return (
    <section className="fn-section" data-testid={testId}>
      <div className="fn-section-head">
        <h3 className="subsection-title">{title}</h3>
        {actions ? <span className="fn-section-actions">{actions}</span> : null}
      </div>
      {children}
    </section>
  );
}
