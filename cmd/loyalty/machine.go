package main

import (
	"fmt"
	"runtime"

	"github.com/loyalty-edge-sync/loyalty/agent"
)

type agentTx = agent.Tx

func machine() string {
	return fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
}
