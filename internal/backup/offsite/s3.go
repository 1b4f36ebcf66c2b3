package offsite

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/officeedge/appliance/internal/config"
)

// partSize is the multipart part: minio-go buffers one part of an upload of unknown length,
// so this bounds the memory an upload of any size takes.
const partSize = 8 << 20

type s3Store struct {
	c      *minio.Client
	bucket string
	prefix string
}

func openS3(ctx context.Context, d config.BackupDest, dial DialFunc) (Store, error) {
	secret, err := os.ReadFile(d.SecretKeyFile)
	if err != nil {
		return nil, fmt.Errorf("offsite: %s: secret key: %w", d.Name, err)
	}
	tr := &http.Transport{DialContext: dial, TLSHandshakeTimeout: 30 * time.Second, ResponseHeaderTimeout: 5 * time.Minute,
		IdleConnTimeout: time.Minute, MaxIdleConnsPerHost: 2}
	c, err := minio.New(d.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(d.AccessKey, strings.TrimSpace(string(secret)), ""),
		Secure: !d.InsecureHTTP, Region: d.Region, Transport: tr})
	if err != nil {
		return nil, fmt.Errorf("offsite: %s: %w", d.Name, err)
	}
	ok, err := c.BucketExists(ctx, d.Bucket)
	if err != nil {
		return nil, fmt.Errorf("offsite: %s: bucket %s: %w", d.Name, d.Bucket, err)
	}
	if !ok {
		if err := c.MakeBucket(ctx, d.Bucket, minio.MakeBucketOptions{Region: d.Region}); err != nil {
			return nil, fmt.Errorf("offsite: %s: make bucket %s: %w", d.Name, d.Bucket, err)
		}
	}
	return &s3Store{c: c, bucket: d.Bucket, prefix: d.Prefix}, nil
}

// Put streams r as a multipart upload: S3 shows the object only once it is completed.
func (s *s3Store) Put(ctx context.Context, name string, r io.Reader) error {
	key := join(s.prefix, name)
	// Parts of an upload cut short by a power cut would otherwise stay (and be billed).
	_ = s.c.RemoveIncompleteUpload(ctx, s.bucket, key)
	_, err := s.c.PutObject(ctx, s.bucket, key, r, -1, minio.PutObjectOptions{PartSize: partSize, ContentType: "application/age-encrypted"})
	if err != nil {
		return fmt.Errorf("s3 put %s: %w", key, err)
	}
	return nil
}

func (s *s3Store) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	o, err := s.c.GetObject(ctx, s.bucket, join(s.prefix, name), minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("s3 get %s: %w", name, err)
	}
	return o, nil
}

func (s *s3Store) Delete(ctx context.Context, name string) error {
	if err := s.c.RemoveObject(ctx, s.bucket, join(s.prefix, name), minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("s3 delete %s: %w", name, err)
	}
	return nil
}

func (s *s3Store) List(ctx context.Context) ([]Object, error) {
	var out []Object
	pre := join(s.prefix, "")
	for o := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: pre, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("s3 list: %w", o.Err)
		}
		out = append(out, Object{Name: strings.TrimPrefix(o.Key, pre), Size: o.Size})
	}
	return out, nil
}

func (s *s3Store) Close() error { return nil }
