package extmodel

import (
	"os"
	"testing"

	"github.com/replay-sgd/replay/internal/fakechild"
)

// TestMain makes the test binary the fake child when re-executed with
// fakechild.EnvRun (the os/exec pattern): the client is tested against a
// real process over real pipes.
func TestMain(m *testing.M) {
	if os.Getenv(fakechild.EnvRun) == "1" {
		fakechild.Main()
	}
	os.Exit(m.Run())
}
