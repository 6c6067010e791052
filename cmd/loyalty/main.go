// Command loyalty runs loyalty edge sync: the central hub, the store agent, the demo, and the
// operator's admin commands. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	_ "time/tzdata" // every IANA zone, so store time zones work on hosts without a zoneinfo database

	"github.com/spf13/cobra"

	"github.com/loyalty-edge-sync/loyalty"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// Warnings of admin commands (slog.Default) read as lines for the person at the terminal.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal now kills the process at once
	}()
	if err := rootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", formatError(err))
		os.Exit(1)
	}
}

// formatError puts an error's stable code (EINVALID, ENOTFOUND, …) first, keeping the context
// it was wrapped in: "EINVALID: invalid configuration: store_id: store id "a b" must be …".
func formatError(err error) string {
	var e *loyalty.Error
	if errors.As(err, &e) {
		return e.Code + ": " + strings.Replace(err.Error(), e.Code+": ", "", 1)
	}
	return err.Error()
}

func rootCommand() *cobra.Command {
	root := group("loyalty", "Offline-first loyalty at the point of sale: a central hub and in-store agents")
	root.SilenceUsage, root.SilenceErrors = true, true
	root.AddCommand(hubCommand(), agentCommand(), initCommand(), demoCommand(), simCommand(), benchCommand(), versionCommand())
	root.AddCommand(adminCommands()...)
	return root
}

func versionCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version and the sync protocol versions spoken",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if wantJSON(cmd) {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"version": version, "sync_protocols": protocolVersions()})
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "loyalty %s (sync protocol %v)\n", version, protocolVersions())
			return err
		},
	}
	jsonFlag(cmd)
	return cmd
}

func hubCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hub",
		Short: "Run the central hub (HTTP API and agent websocket endpoint)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return serve(cmd, DefaultHubConfig(), func(cfg HubConfig) service { return &HubMain{Config: cfg} })
		},
	}
	hubFlags(cmd)
	cmd.Flags().Bool("check-config", false, "validate and print the configuration, then exit")
	cmd.Flags().String("listen", "", "address for the HTTP API and websockets (host:port)")
	cmd.Flags().String("admin-api-key", "", "admin API key (prefer LOYALTY_ADMIN_API_KEY)")
	return cmd
}

// service is a long-running process of this binary: a hub (HubMain) or an agent (AgentMain).
type service interface {
	Open(ctx context.Context) error
	Close() error
	logger() *slog.Logger
	// Failed delivers why the service must stop serving before it was told to; nil if nothing can.
	Failed() <-chan error
}

func (m *HubMain) logger() *slog.Logger   { return m.Logger }
func (m *AgentMain) logger() *slog.Logger { return m.Logger }

// Failed delivers why the hub must stop serving: on PostgreSQL, its serving lock lost to
// `loyalty restore` (hubpostgres.Store.Serve).
func (m *HubMain) Failed() <-chan error { return m.failed }

// Failed delivers nothing: nothing outside the agent stops it.
func (m *AgentMain) Failed() <-chan error { return nil }

// serve runs the service of cmd, made by with from its configuration: it loads and validates the
// configuration over defaults (or, with --check-config, prints it and stops), opens the service,
// and closes it when cmd's context ends (a signal), or when the service fails (Failed), returning
// why.
func serve[C interface{ Validate() error }](cmd *cobra.Command, defaults C, with func(C) service) error {
	var cfg C
	if err := loadConfig(cmd, defaults, &cfg); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	if check, _ := cmd.Flags().GetBool("check-config"); check {
		printConfig(cmd.OutOrStdout(), cfg)
		return nil
	}
	return runService(cmd.Context(), with(cfg))
}

// runService opens m and closes it when ctx ends (a signal), or when m fails (Failed): then it returns
// why, so that the process exits with an error.
func runService(ctx context.Context, m service) error {
	if err := m.Open(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		m.logger().Info("shutting down")
		return m.Close()
	case err := <-m.Failed():
		m.logger().Error("stopping", slog.Any("err", err))
		m.Close()
		return err
	}
}

// hubFlags adds the flags every command that opens the hub's database takes.
func hubFlags(cmd *cobra.Command) {
	cmd.Flags().String("config", "", "config file (YAML, TOML or JSON); see configs/hub.yaml")
	cmd.Flags().String("database", "", "the hub's database: a SQLite file, or a postgres:// URL")
}

func agentCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a store agent (POS API on loopback, local replica, sync with the hub)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return serve(cmd, DefaultAgentConfig(), func(cfg AgentConfig) service { return &AgentMain{Config: cfg} })
		},
	}
	cmd.Flags().String("config", "", "config file (YAML, TOML or JSON); see configs/agent.yaml")
	cmd.Flags().Bool("check-config", false, "validate and print the configuration, then exit")
	cmd.Flags().String("store-id", "", "this store's id, as registered at the hub")
	cmd.Flags().String("hub-url", "", "the hub's websocket URL (wss://host:port/v1/sync; ws:// only to loopback)")
	cmd.Flags().Bool("allow-insecure-ws", false, "allow a plain ws:// hub_url to a host other than loopback (unencrypted; logs a warning)")
	cmd.Flags().String("listen", "", "address of the POS API (host:port; keep it on loopback)")
	cmd.Flags().String("database", "", "replica SQLite database file")
	cmd.Flags().String("pos-token", "", "bearer token the POS must send (prefer LOYALTY_POS_TOKEN)")
	cmd.Flags().StringSlice("pos-allowed-hosts", nil, "further host names the POS calls the agent by (comma-separated); others are refused")
	cmd.Flags().Bool("pos-insecure-lan", false, "serve the POS API beyond loopback without a POS token (logs a warning)")
	cmd.Flags().String("timezone", "", "the store's IANA time zone, for campaign days and hours (e.g. Europe/Berlin)")
	return cmd
}
