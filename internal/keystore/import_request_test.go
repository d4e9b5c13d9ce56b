package keystore

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestImportRequestIsReadFromBothPlaces: a version names the import request
// it answered in its own annotation; versions an older release wrote carry
// it in the rotate-request annotation behind "import:", and must still read
// as answered, or their import Secret would be imported a second time.
func TestImportRequestIsReadFromBothPlaces(t *testing.T) {
	for name, tc := range map[string]struct {
		annotations       map[string]string
		wantImportRequest string
		wantRotateRequest string
	}{
		"an imported version of this release": {
			annotations:       map[string]string{AnnotationImportRequest: "secret-uid@key-uid/2"},
			wantImportRequest: "secret-uid@key-uid/2",
		},
		"an imported version of an older release": {
			annotations:       map[string]string{AnnotationRotateRequest: "import:secret-uid@key-uid/2"},
			wantImportRequest: "secret-uid@key-uid/2",
			// Kept: on a Generated key this is a rotate value that must
			// still count as answered.
			wantRotateRequest: "import:secret-uid@key-uid/2",
		},
		"the new annotation wins over an old mark": {
			annotations:       map[string]string{AnnotationImportRequest: "new@key-uid/3", AnnotationRotateRequest: "import:old@key-uid/2"},
			wantImportRequest: "new@key-uid/3",
			wantRotateRequest: "import:old@key-uid/2",
		},
		"a rotated version answers no import request": {
			annotations:       map[string]string{AnnotationRotateRequest: "r1"},
			wantRotateRequest: "r1",
		},
	} {
		t.Run(name, func(t *testing.T) {
			annotations := map[string]string{AnnotationKeySpec: "SYMMETRIC_DEFAULT", AnnotationCreatedAt: "2030-01-02T03:04:05Z"}
			for k, v := range tc.annotations {
				annotations[k] = v
			}
			v, err := FromSecret(&corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: "kubekms-system", Name: SecretName("0b5c8f5e-5a0e-4f43-a5a3-1c2d3e4f5a6b", 1),
					Labels:      map[string]string{LabelKeyID: "0b5c8f5e-5a0e-4f43-a5a3-1c2d3e4f5a6b", LabelKeyVersion: "1"},
					Annotations: annotations},
				Type: SecretType,
			})
			if err != nil {
				t.Fatal(err)
			}
			if v.ImportRequest != tc.wantImportRequest || v.RotateRequest != tc.wantRotateRequest {
				t.Errorf("ImportRequest, RotateRequest = %q, %q; want %q, %q", v.ImportRequest, v.RotateRequest, tc.wantImportRequest, tc.wantRotateRequest)
			}
		})
	}
}
