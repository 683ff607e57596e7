package cmd

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/rogpeppe/go-internal/testscript"
)

// s3Cmds are the script commands of the bucket test servers (S3, GCS,
// Azure Blob) and of the bucket client commands that read and write them
// with each cloud's own SDK (bput, bget, bls, bdel; s3put is bput).
func s3Cmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"s3server":  cmdS3Server,
		"s3put":     cmdS3Put,
		"gcsserver": cmdGCSServer,
		"azurite":   cmdAzurite,
		"bput":      cmdBPut,
		"bget":      cmdBGet,
		"bls":       cmdBLs,
		"bdel":      cmdBDel,
	}
}

// The credentials the scripts' S3 server is given; the secret is the one
// value no output may hold ($AWS_SECRET_ACCESS_KEY).
const (
	s3TestKeyID  = "AKIAFHIRBULKTEST0001"
	s3TestSecret = "s3cr3t-FHIRBULK-do-not-print-0123456789"
)

// s3server [-impl moto|moto-auth|gofakes3] [BUCKET...] starts an S3 server on a free
// port of 127.0.0.1 for this script, stopped when it ends, creates the
// buckets, and points the AWS SDK's standard variables at it:
// AWS_ENDPOINT_URL (also $S3ENDPOINT), AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_REGION; the profile files are pointed at
// nothing and the instance metadata service is off, so that nothing of
// the machine's own AWS setup takes part. $S3IMPL says which server runs.
//
// $S3HOST is the endpoint's 127.0.0.1:PORT (for s3cmd's --host).
//
// The servers: moto (the default) is moto_server, Python's moto (pip
// install 'moto[server]'), a subprocess; without it the script fails,
// saying how to install it. gofakes3 is github.com/johannesboyne/gofakes3
// inside the test process: nothing to install and no start-up wait.
// Neither checks request signatures, so a wrong secret goes unnoticed by
// both; moto-auth is moto with its IAM checks on (see cmdS3ServerAuth),
// which does, with a key of its own making in AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY. FHIRBULK_TEST_S3_IMPL changes the default, so that
// every S3 script can be run against the other server too.
func cmdS3Server(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! s3server")
	}
	impl := os.Getenv("FHIRBULK_TEST_S3_IMPL")
	if impl == "" {
		impl = "moto"
	}
	if len(args) >= 2 && args[0] == "-impl" {
		impl, args = args[1], args[2:]
	}
	var endpoint string
	switch impl {
	case "moto":
		endpoint = startMoto(ts)
	case "moto-auth":
		cmdS3ServerAuth(ts, args)
		return
	case "gofakes3":
		endpoint = startGoFakeS3(ts)
	default:
		ts.Fatalf("s3server: -impl %s: want moto or gofakes3", impl)
	}
	ts.Setenv("S3IMPL", impl)
	ts.Setenv("S3ENDPOINT", endpoint)
	ts.Setenv("S3HOST", strings.TrimPrefix(endpoint, "http://"))
	ts.Setenv("AWS_ENDPOINT_URL", endpoint)
	ts.Setenv("AWS_ACCESS_KEY_ID", s3TestKeyID)
	ts.Setenv("AWS_SECRET_ACCESS_KEY", s3TestSecret)
	ts.Setenv("AWS_REGION", "us-east-1")
	ts.Setenv("AWS_CONFIG_FILE", ts.MkAbs("no-aws-config"))
	ts.Setenv("AWS_SHARED_CREDENTIALS_FILE", ts.MkAbs("no-aws-credentials"))
	ts.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	c := s3TestClient(endpoint)
	for _, b := range args {
		_, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(b)})
		if err != nil {
			ts.Fatalf("create bucket %s: %v", b, err)
		}
	}
}

// startMoto runs moto_server and returns its endpoint once it answers;
// env is added to its environment.
func startMoto(ts *testscript.TestScript, env ...string) string {
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		ts.Fatalf("moto_server not found: the s3 tests need it; install it with: pip install 'moto[server]'")
	}
	port := freePort(ts)
	endpoint := "http://127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Env = append(os.Environ(), env...)
	startServerProcess(ts, "moto_server", "moto.log", endpoint+"/moto-api/", cmd)
	return endpoint
}

// cmdS3ServerAuth is s3server -impl moto-auth: moto with its IAM checks
// on, which make it check every request's signature (and policy) after
// the first INITIAL_NO_AUTH_ACTION_COUNT requests. Those few make the
// buckets, a user, its access key and a policy allowing it all of S3;
// the AWS variables then name that key, so that a request signed wrong
// (or with another secret) is refused as AWS would refuse it.
func cmdS3ServerAuth(ts *testscript.TestScript, buckets []string) {
	endpoint := startMoto(ts, "INITIAL_NO_AUTH_ACTION_COUNT="+strconv.Itoa(len(buckets)+3))
	ctx := context.Background()
	c := s3TestClient(endpoint)
	for _, b := range buckets {
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			ts.Fatalf("create bucket %s: %v", b, err)
		}
	}
	ic := iam.New(iam.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(s3TestKeyID, s3TestSecret, ""),
	})
	user := aws.String("fhirbulk")
	if _, err := ic.CreateUser(ctx, &iam.CreateUserInput{UserName: user}); err != nil {
		ts.Fatalf("moto: create user: %v", err)
	}
	key, err := ic.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: user})
	if err != nil {
		ts.Fatalf("moto: create access key: %v", err)
	}
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}`
	if _, err := ic.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: user, PolicyName: aws.String("s3"), PolicyDocument: aws.String(policy)}); err != nil {
		ts.Fatalf("moto: put user policy: %v", err)
	}
	s3Keys.Store(endpoint, [2]string{aws.ToString(key.AccessKey.AccessKeyId), aws.ToString(key.AccessKey.SecretAccessKey)})
	ts.Defer(func() { s3Keys.Delete(endpoint) })
	ts.Setenv("S3IMPL", "moto-auth")
	ts.Setenv("S3ENDPOINT", endpoint)
	ts.Setenv("S3HOST", strings.TrimPrefix(endpoint, "http://"))
	ts.Setenv("AWS_ENDPOINT_URL", endpoint)
	ts.Setenv("AWS_ACCESS_KEY_ID", aws.ToString(key.AccessKey.AccessKeyId))
	ts.Setenv("AWS_SECRET_ACCESS_KEY", aws.ToString(key.AccessKey.SecretAccessKey))
	ts.Setenv("AWS_REGION", "us-east-1")
	ts.Setenv("AWS_CONFIG_FILE", ts.MkAbs("no-aws-config"))
	ts.Setenv("AWS_SHARED_CREDENTIALS_FILE", ts.MkAbs("no-aws-credentials"))
	ts.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// startGoFakeS3 serves gofakes3 (in memory) from this process and returns
// its endpoint. The listener is open before this returns, so the first
// request waits in its backlog at worst: there is nothing to poll for.
func startGoFakeS3(ts *testscript.TestScript) string {
	faker := gofakes3.New(s3mem.New())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	srv := &http.Server{Handler: faker.Server(), ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(l)
	ts.Defer(func() { srv.Close() })
	return "http://" + l.Addr().String()
}

// freePort is a port of 127.0.0.1 that was free a moment ago, for a server
// of another process (which may, rarely, lose it to someone else first:
// startServerProcess then says the server ended).
func freePort(ts *testscript.TestScript) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServerProcess starts cmd, its output to the script's file logName,
// killed when the script ends, and waits (30s at most) until probe answers
// HTTP at all (any status: the probe only says the port is served). A
// server that ends or does not answer fails the script with its log. How
// long it took is logged (go test -v shows it).
func startServerProcess(ts *testscript.TestScript, name, logName, probe string, cmd *exec.Cmd) {
	logf, err := os.Create(ts.MkAbs(logName))
	ts.Check(err)
	cmd.Stdout, cmd.Stderr = logf, logf
	t0 := time.Now()
	ts.Check(cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ts.Defer(func() {
		cmd.Process.Kill()
		<-exited
		logf.Close()
	})
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := t0.Add(30 * time.Second)
	for {
		resp, err := client.Get(probe)
		if err == nil {
			resp.Body.Close()
			break
		}
		log := func() string { b, _ := os.ReadFile(ts.MkAbs(logName)); return string(b) }
		select {
		case werr := <-exited:
			exited <- werr // for the deferred wait
			ts.Fatalf("%s ended before it answered on %s (%v):\n%s", name, probe, werr, log())
		default:
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not answer on %s within 30s: %v\n%s", name, probe, err, log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Logf("%s answered after %.2fs", name, time.Since(t0).Seconds())
}

// s3Keys are the access keys moto-auth servers made, by endpoint: the
// scripts' own clients (bput, bls, ...) sign with them there.
var s3Keys sync.Map // endpoint → [2]string{id, secret}

func s3TestClient(endpoint string) *s3.Client {
	id, secret := s3TestKeyID, s3TestSecret
	if k, ok := s3Keys.Load(endpoint); ok {
		id, secret = k.([2]string)[0], k.([2]string)[1]
	}
	return s3.New(s3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(id, secret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// s3put [-gzip] FILE s3://BUCKET/KEY is bput for s3:// URLs only (the
// older name, kept for the scripts that use it).
func cmdS3Put(ts *testscript.TestScript, neg bool, args []string) {
	if n := len(args); n == 0 || !hasScheme(args[n-1], "s3") {
		ts.Fatalf("usage: s3put [-gzip] FILE s3://BUCKET/KEY")
	}
	cmdBPut(ts, neg, args)
}
