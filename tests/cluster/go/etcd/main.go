// SPDX-License-Identifier: Apache-2.0

// Command etcd is the etcd server, built from the published etcd server module
// (whose own go.mod replaces its sibling modules with local paths).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
