// Command virtmq is the virtmq command line; see package cli.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/virtmq/virtmq/cli"
	"github.com/virtmq/virtmq/internal/logging"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/policy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := &cli.Env{
		Stdin:             os.Stdin,
		Stdout:            os.Stdout,
		Stderr:            os.Stderr,
		Getenv:            os.Getenv,
		Logger:            logging.New(logging.Stderr, os.Stderr, slog.LevelInfo, "virtmq"),
		DefaultPolicyPath: policy.DefaultPath,
		Dial:              dial,
		Terminal:          cli.IsTerminal(os.Stdout) && cli.IsTerminal(os.Stderr),
		StdoutTerminal:    cli.IsTerminal(os.Stdout),
		Columns:           cli.TerminalColumns(os.Stdout),
	}
	code := cli.Main(ctx, env, os.Args[1:])
	stop()
	os.Exit(code)
}

// dial connects to the libvirt URI the command line picked.
func dial(ctx context.Context, uri virt.URI) (virt.Conn, error) {
	c, _, err := virt.DialURI(ctx, uri, virt.DialOptions{Getenv: os.Getenv})
	return c, err
}
