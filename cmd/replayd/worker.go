package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/replay-sgd/replay/remote"
	"github.com/replay-sgd/replay/scheduler"
)

const workerUsage = `replayd worker — compute backward jobs of a replayd daemon's runs,
pulled through its NATS server (see the README, "Many machines").

Usage: replayd worker --nats URL [flags]

Examples:
  replayd worker --nats nats://127.0.0.1:4222
  replayd worker --nats nats://queue.example:4222 --token "$(cat token)" --jobs 4

Flags:
`

// runWorker is `replayd worker`: it computes jobs until SIGTERM or SIGINT,
// then hands back the job it is computing and returns nil.
func runWorker(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("replayd worker", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	url := fs.String("nats", "", "the daemon's NATS server (nats://host:port)")
	token := fs.String("token", "", "the daemon's --auth-token (default $REPLAYD_TOKEN)")
	jobs := fs.Int("jobs", 1, "jobs computed at once (one core each)")
	host, _ := os.Hostname()
	name := fs.String("name", fmt.Sprintf("%s-%d", host, os.Getpid()), "this worker's name in replayctl workers")
	dataPath := fs.String("data-path", "", "this machine's Fashion-MNIST directory (default: the run's, else /usr/share/datasets/fashion-mnist)")
	level := fs.String("log-level", "info", "debug | info | warn | error")
	var ec extConfig
	addExtFlags(fs, &ec) // the daemon's: this worker serves the jobs of runs of these models
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("worker: %w (see replayd worker --help)", err)
	}
	if *help {
		fmt.Fprint(stdout, workerUsage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return nil
	}
	var errs []string
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if *url == "" {
		errs = append(errs, "--nats URL is required")
	}
	if *jobs < 1 || *jobs > 1024 {
		errs = append(errs, fmt.Sprintf("--jobs %d: must be in [1, 1024]", *jobs))
	}
	if *name == "" || strings.ContainsAny(*name, " \t\r\n") {
		errs = append(errs, fmt.Sprintf("--name %q: must be non-empty, without white space", *name))
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		errs = append(errs, fmt.Sprintf("--log-level %q: want debug, info, warn or error", *level))
	}
	if *token == "" {
		*token = os.Getenv("REPLAYD_TOKEN")
	}
	models, extErrs := ec.models()
	for _, e := range extErrs {
		errs = append(errs, e.Error())
	}
	if len(errs) > 0 {
		return errors.New("worker: " + strings.Join(errs, "; "))
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ext, err := startExtModels(context.Background(), ec, models, *jobs+1, log) // extmodels.go
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer ext.Close() // after the worker stopped computing
	w, err := remote.NewWorker(remote.WorkerConfig{URL: *url, Token: *token, Name: *name, Jobs: *jobs,
		DataPath: *dataPath, MemoBudget: scheduler.DefaultMemoBudget, Logger: log, Families: modelFamilies(ext)})
	if err != nil {
		return err
	}
	if err := w.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
