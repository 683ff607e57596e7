package cmd

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rogpeppe/go-internal/testscript"
)

// s3Cmds are the script commands of the S3 test server (moto).
func s3Cmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"s3server": cmdS3Server,
		"s3put":    cmdS3Put,
	}
}

// The credentials the scripts' S3 server is given; the secret is the one
// value no output may hold ($AWS_SECRET_ACCESS_KEY).
const (
	s3TestKeyID  = "AKIAFHIRBULKTEST0001"
	s3TestSecret = "s3cr3t-FHIRBULK-do-not-print-0123456789"
)

// s3server [BUCKET...] starts moto_server (Python's moto, pip install
// 'moto[server]') on a free port of 127.0.0.1 for this script, stopped
// when it ends, creates the buckets, and points the AWS SDK's standard
// variables at it: AWS_ENDPOINT_URL (also $S3ENDPOINT), AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_REGION; the profile files are pointed at
// nothing and the instance metadata service is off, so that nothing of
// the machine's own AWS setup takes part. Without moto_server the script
// fails, saying how to install it.
func cmdS3Server(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! s3server")
	}
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		ts.Fatalf("moto_server not found: the s3 tests need it; install it with: pip install 'moto[server]'")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	logf, err := os.Create(ts.MkAbs("moto.log"))
	ts.Check(err)
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = logf, logf
	ts.Check(cmd.Start())
	ts.Defer(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	endpoint := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(endpoint + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(ts.MkAbs("moto.log"))
			ts.Fatalf("moto_server did not answer on %s within 30s: %v\n%s", endpoint, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ts.Setenv("S3ENDPOINT", endpoint)
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

func s3TestClient(endpoint string) *s3.Client {
	return s3.New(s3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(s3TestKeyID, s3TestSecret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// s3put [-gzip] FILE s3://BUCKET/KEY uploads FILE (gzipped on the way
// with -gzip) to the script's S3 server (s3server).
func cmdS3Put(ts *testscript.TestScript, neg bool, args []string) {
	gz := len(args) > 0 && args[0] == "-gzip"
	if gz {
		args = args[1:]
	}
	if neg || len(args) != 2 {
		ts.Fatalf("usage: s3put [-gzip] FILE s3://BUCKET/KEY")
	}
	endpoint := ts.Getenv("S3ENDPOINT")
	if endpoint == "" {
		ts.Fatalf("s3put: no s3server in this script")
	}
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	if gz {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(data)
		ts.Check(zw.Close())
		data = b.Bytes()
	}
	bucket, key, ok := strings.Cut(strings.TrimPrefix(args[1], "s3://"), "/")
	if !ok || !strings.HasPrefix(args[1], "s3://") {
		ts.Fatalf("s3put: want s3://BUCKET/KEY, not %s", args[1])
	}
	_, err = s3TestClient(endpoint).PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data),
	})
	if err != nil {
		ts.Fatalf("s3put %s: %v", filepath.Base(args[0]), fmt.Sprint(err))
	}
}
