package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// cardLinkCommand is loyalty member card-link: make a member card link (/m/<token> on the hub),
// or revoke every link of the member made so far (hub/card_links.go).
func cardLinkCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "card-link ID",
		Short: "Print a link to the member's card page (/m/...), or revoke their links with --revoke",
		Long: `Make a signed link to the member's card page at the hub: their balance, tier, QR code,
rewards, vouchers and recent history, with no API key. Send it to the member; anyone who has it can
see the card, until it expires (--hours, 30 days by default, at most 366 days). --base-url puts the
hub's public address in front of the path printed. --revoke makes every link of the member made so
far stop working (links made later work). Both are audited as key id "cli".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hours, _ := cmd.Flags().GetInt64("hours")
			revoke, _ := cmd.Flags().GetBool("revoke")
			base, _ := cmd.Flags().GetString("base-url")
			lo, hi := int64(hub.CardLinkMinTTL/time.Hour), int64(hub.CardLinkMaxTTL/time.Hour)
			if hours < lo || hours > hi {
				return loyalty.Errorf(loyalty.EINVALID, "--hours must be a whole number from %d to %d", lo, hi)
			}
			if base != "" && !strings.HasPrefix(base, "https://") && !strings.HasPrefix(base, "http://") {
				return loyalty.Errorf(loyalty.EINVALID, "--base-url must start with https:// (or http://)")
			}
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				if revoke {
					r, err := h.RevokeCardLinks(ctx, args[0])
					if err != nil {
						return err
					}
					if wantJSON(cmd) {
						return writeJSON(cmd.OutOrStdout(), r)
					}
					tell(cmd, "member %s: every card link made so far is revoked; a new one works (loyalty member card-link %s)", r.MemberID, r.MemberID)
					return nil
				}
				l, err := h.NewCardLink(ctx, args[0], time.Duration(hours)*time.Hour)
				if err != nil {
					return err
				}
				if base != "" {
					l.URLPath = strings.TrimSuffix(base, "/") + l.URLPath
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), l)
				}
				return say(cmd, l.URLPath, fmt.Sprintf("member %s's card link, valid until %s; send it to the member only", l.MemberID, l.ExpiresAt.Format(time.RFC3339)))
			})
		},
	}
	cmd.Flags().Int64("hours", int64(hub.CardLinkDefaultTTL/time.Hour), "how long the link works, in hours")
	cmd.Flags().Bool("revoke", false, "revoke every card link of the member made so far instead")
	cmd.Flags().String("base-url", "", "the hub's public address (https://loyalty.example.com), printed before the path")
	jsonFlag(cmd)
	hubFlags(cmd)
	return cmd
}
