// SPDX-License-Identifier: Apache-2.0

// Command coredns is CoreDNS with only the plugins the test cluster's DNS needs:
// kubernetes (the cluster domain), bind (one address), ready (a readiness
// endpoint) and errors. No forward plugin is linked in, so nothing can send a
// query to the host's resolver.
package main

import (
	_ "github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
