package main

import (
	"encoding/csv"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

var workersCmd = command{
	name:     "workers",
	synopsis: "",
	summary:  "list the remote workers (replayd --remote-workers or --nats): name, fingerprint, jobs done, ops/s, last seen, state, the runs each refuses; then the runs no worker can take, and why",
	example:  "replayctl workers",
	run:      runWorkers,
}

func runWorkers(e *env, c *command, args []string) error {
	fs := e.flags(c)
	if err := e.parse(c, fs, args); err != nil {
		return helped(err)
	}
	if err := noArgs(c, fs.Args()); err != nil {
		return err
	}
	l, err := e.client().Workers(e.ctx)
	if err != nil {
		return err
	}
	switch e.g.output {
	case "json":
		return writeJSON(e.stdout, l)
	case "csv":
		w := csv.NewWriter(e.stdout)
		w.Write([]string{"name", "fingerprint", "slots", "busy", "jobs_done", "ops_per_sec", "last_seen", "state", "refuses"})
		for _, x := range l.Workers {
			w.Write([]string{x.Name, x.Fingerprint, itoa(x.Slots), itoa(x.Busy), strconv.FormatInt(x.Done, 10),
				strconv.FormatFloat(x.OpsPerSec, 'f', 1, 64), x.LastSeen.UTC().Format(time.RFC3339), x.State, strings.Join(x.Refuses, " ")})
		}
		w.Flush()
		return w.Error()
	}
	if !l.Remote {
		fmt.Fprintln(e.stdout, "no remote workers: the daemon computes in-process (start it with --remote-workers or --nats)")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFINGERPRINT\tJOBS DONE\tOPS/S\tLAST SEEN\tSTATE\tREFUSES")
	for _, x := range l.Workers {
		refuses := "-"
		if len(x.Refuses) > 0 {
			refuses = strings.Join(x.Refuses, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%s ago\t%s\t%s\n", x.Name, x.Fingerprint, x.Done, x.OpsPerSec,
			time.Since(x.LastSeen).Round(time.Second), x.State, refuses)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// The runs no worker can take, in the words of `replayctl status RUN`.
	for _, s := range l.Stuck {
		fmt.Fprintf(e.stdout, "%s: backward waits: %s\n", s.Run, s.Reason)
	}
	return nil
}
