package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// reportCommand is `loyalty report summary|cohorts|stores` on the hub's database: the same
// reports as GET /v1/reports/… (docs/REPORTS.md), as a table, JSON or CSV.
func reportCommand() *cobra.Command {
	report := group("report", "Reports of a range: members, purchases, points, retention, liability, budgets, conflicts, stores (docs/REPORTS.md)")
	summary := reportSub("summary", "Chain-wide (or one store's) figures of a range", func(ctx context.Context, h *hub.Hub, q hub.ReportQuery, w io.Writer, format string) error {
		r, err := h.ReportSummary(ctx, q)
		if err != nil {
			return err
		}
		return printReport(w, format, r, func() error { return summaryTable(w, r) })
	})
	cohorts := reportSub("cohorts", "Monthly cohorts of members who enrolled in a range: who was active in each month since", func(ctx context.Context, h *hub.Hub, q hub.ReportQuery, w io.Writer, format string) error {
		r, err := h.ReportCohorts(ctx, q)
		if err != nil {
			return err
		}
		return printReport(w, format, r, func() error {
			t := newTable(w, "cohort", "size", "k", "active", "rate")
			for _, c := range r.Cohorts {
				for _, p := range c.Retention {
					t.row(c.Month, c.Size, p.K, p.Active, pct(p.Rate))
				}
			}
			return t.flush()
		})
	})
	stores := reportSub("stores", "Every store's figures of a range and its sync health", func(ctx context.Context, h *hub.Hub, q hub.ReportQuery, w io.Writer, format string) error {
		r, err := h.ReportStores(ctx, q)
		if err != nil {
			return err
		}
		return printReport(w, format, r, func() error {
			t := newTable(w, "store", "connected", "last seen", "outbox", "active", "purchases", "issued", "redeemed", "liability", "conflicts")
			for _, s := range r.Stores {
				var n int64
				for _, c := range s.Conflicts {
					n += c.Count
				}
				t.row(s.Store, s.Health.Connected, s.Health.LastSeen, s.Health.Outbox, s.Active, s.Purchases, s.PointsIssued,
					s.PointsRedeemed, s.Liability.Points, n)
			}
			return t.flush()
		})
	})
	report.AddCommand(summary, cohorts, stores)
	return report
}

type reportFunc func(ctx context.Context, h *hub.Hub, q hub.ReportQuery, w io.Writer, format string) error

func reportSub(use, short string, run reportFunc) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var q hub.ReportQuery
			var err error
			from, _ := cmd.Flags().GetString("from")
			to, _ := cmd.Flags().GetString("to")
			if q.From, err = hub.ParseReportTime("--from", from); err != nil {
				return err
			}
			if q.To, err = hub.ParseReportTime("--to", to); err != nil {
				return err
			}
			q.Store, _ = cmd.Flags().GetString("store")
			format, _ := cmd.Flags().GetString("format")
			if format != "table" && format != "json" && format != "csv" {
				return loyalty.Errorf(loyalty.EINVALID, "--format must be table, json or csv")
			}
			if err := q.Validate(); err != nil {
				return err
			}
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				return run(ctx, h, q, cmd.OutOrStdout(), format)
			})
		},
	}
	c.Flags().String("from", "", "start of the range, included: YYYY-MM-DD (UTC) or an RFC 3339 time")
	c.Flags().String("to", "", "end of the range, excluded: YYYY-MM-DD (UTC) or an RFC 3339 time")
	c.Flags().String("store", "", "one store's figures instead of the chain's")
	c.Flags().String("format", "table", "table, json or csv")
	hubFlags(c)
	return c
}

// printReport writes r as JSON, CSV, or the table table writes.
func printReport(w io.Writer, format string, r interface{ WriteCSV(io.Writer) error }, table func() error) error {
	switch format {
	case "json":
		return writeJSON(w, r)
	case "csv":
		return r.WriteCSV(w)
	}
	return table()
}

// pct prints a ratio as a percentage, "-" when it has no value.
func pct(r hub.Ratio) string {
	if r == nil {
		return "-"
	}
	return strconv.FormatFloat(*r*100, 'f', 1, 64) + "%"
}

// num prints a ratio with two decimals, "-" when it has no value.
func num(r hub.Ratio) string {
	if r == nil {
		return "-"
	}
	return strconv.FormatFloat(*r, 'f', 2, 64)
}

func summaryTable(w io.Writer, r hub.SummaryReport) error {
	t := newTable(w, "figure", "currency", "value")
	t.row("members (total)", "", r.Members.Total)
	t.row("members enrolled", "", r.Members.Enrolled)
	t.row("members active", "", r.Members.Active)
	t.row("purchases", "", r.Purchases.Count)
	t.row("buyers", "", r.Purchases.Buyers)
	t.row("repeat purchase rate", "", pct(r.Purchases.RepeatPurchaseRate))
	t.row("purchase frequency", "", num(r.Purchases.Frequency))
	for _, c := range r.Purchases.ByCurrency {
		t.row("sales (minor units)", c.Currency, c.Amount)
		t.row("average order value", c.Currency, num(c.AOV))
		t.row("customer lifetime value", c.Currency, num(c.CLV))
	}
	t.row("points issued", "", r.Points.Issued)
	t.row("points redeemed", "", r.Points.Redeemed)
	t.row("redemption rate", "", pct(r.Points.RedemptionRate))
	t.row("monthly churn", "", pct(r.Retention.MonthlyChurn))
	t.row("expected lifespan (years)", "", num(r.Retention.LifespanYears))
	t.row("points liability", "", r.Liability.Points)
	if r.Liability.Value != nil {
		t.row("points liability value", r.Liability.Currency, *r.Liability.Value)
	}
	t.row("overdrawn points", "", r.Liability.Overdrawn)
	for _, b := range r.Budgets {
		t.row(fmt.Sprintf("budget %s used", b.ID), "", pct(b.Used))
	}
	for _, c := range r.Conflicts {
		t.row("conflicts: "+c.Kind, "", c.Count)
	}
	return t.flush()
}
