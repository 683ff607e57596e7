package cmd

import (
	"context"
	"os"
	"os/exec"
	"strconv"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/rogpeppe/go-internal/testscript"
)

// Azurite's well-known development account and key (the same in every
// Azurite and in Microsoft's documentation; no secret).
const (
	azuriteAccount = "devstoreaccount1"
	azuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// azurite [CONTAINER...] starts Azurite's blob service (npm's azurite:
// azurite-blob, named by FHIRBULK_AZURITE or found on PATH; scripts/test.sh
// installs it) on a free port of 127.0.0.1 for this script, its data in
// the script's directory, killed when the script ends, and creates the
// containers with Azure's own SDK. It sets what gocloud.dev's azureblob
// default opener (azblob://CONTAINER) reads: AZURE_STORAGE_ACCOUNT and
// AZURE_STORAGE_KEY (a shared key), AZURE_STORAGE_DOMAIN=127.0.0.1:PORT,
// AZURE_STORAGE_PROTOCOL=http and AZURE_STORAGE_IS_LOCAL_EMULATOR=true (the
// account in the path, http allowed); $AZENDPOINT is the service URL,
// http://127.0.0.1:PORT/devstoreaccount1. Without Azurite the script
// fails, saying how to install it.
func cmdAzurite(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! azurite")
	}
	bin := os.Getenv("FHIRBULK_AZURITE")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("azurite-blob"); err != nil {
			ts.Fatalf("azurite-blob not found: the azblob tests need Azurite; run scripts/test.sh, which installs it, or: npm install --prefix DIR azurite@%s and set FHIRBULK_AZURITE=DIR/node_modules/.bin/azurite-blob", azuriteVersion)
		}
	}
	port := freePort(ts)
	dir := ts.MkAbs("azurite")
	ts.Check(os.MkdirAll(dir, 0o777))
	domain := "127.0.0.1:" + strconv.Itoa(port)
	endpoint := "http://" + domain + "/" + azuriteAccount
	// --skipApiVersionCheck: the SDK may be newer than this Azurite;
	// --disableTelemetry: Azurite would otherwise call out to Azure.
	startServerProcess(ts, "azurite-blob", "azurite.log", endpoint+"?comp=list",
		exec.Command(bin, "--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port),
			"--location", dir, "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry"))
	ts.Setenv("AZENDPOINT", endpoint)
	ts.Setenv("AZURE_STORAGE_ACCOUNT", azuriteAccount)
	ts.Setenv("AZURE_STORAGE_KEY", azuriteKey)
	ts.Setenv("AZURE_STORAGE_DOMAIN", domain)
	ts.Setenv("AZURE_STORAGE_PROTOCOL", "http")
	ts.Setenv("AZURE_STORAGE_IS_LOCAL_EMULATOR", "true")
	c := azTestClient(ts, endpoint)
	for _, name := range args {
		if _, err := c.CreateContainer(context.Background(), name, nil); err != nil {
			ts.Fatalf("create container %s: %v", name, oneLine(err.Error()))
		}
	}
}

// azuriteVersion is the Azurite that scripts/test.sh installs (the newest
// that runs on Node 20: 3.36 and later want Node 21 or 22).
const azuriteVersion = "3.35.0"

// azTestClient is Azure's own blob client for the script's Azurite, with
// the development account's shared key.
func azTestClient(ts *testscript.TestScript, endpoint string) *azblob.Client {
	cred, err := azblob.NewSharedKeyCredential(azuriteAccount, azuriteKey)
	ts.Check(err)
	c, err := azblob.NewClientWithSharedKeyCredential(endpoint+"/", cred, nil)
	ts.Check(err)
	return c
}
