package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pullgate/pullgate/proxy"
)

// reloadOnHangup asks the server to reload its rules on SIGHUP until ctx
// ends. The server reloads them in place itself when their files change
// (gate.Gate.Run); the signal is the operator's way to say "now".
func reloadOnHangup(ctx context.Context, srv *proxy.Server) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			srv.ReloadRules("SIGHUP")
		}
	}
}
