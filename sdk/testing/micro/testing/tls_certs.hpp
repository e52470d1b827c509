// Test certificates made with OpenSSL's C API in a temp dir: a CA, a server certificate it signs
// (for localhost and 127.0.0.1), an expired one, and an unrelated CA. EC P-256 keys: fast.
// Shared by the TLS tests of several modules; a test including it links OpenSSL::Crypto.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

namespace micro::testing::tls {

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* c) const { X509_free(c); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

inline Key new_key() {
  Key key(EVP_EC_gen("P-256"));
  if (!key) throw std::runtime_error("EVP_EC_gen failed");
  return key;
}

inline void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) throw std::runtime_error("X509V3_EXT_conf_nid failed");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `subject_key`, valid from now+not_before_s to now+not_after_s, signed by
// `issuer_key` (`issuer` null: self-signed).
inline Cert new_cert(const std::string& common_name, EVP_PKEY* subject_key, X509* issuer,
                     EVP_PKEY* issuer_key, bool ca, long not_before_s, long not_after_s,
                     long serial) {
  Cert cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), not_before_s);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), not_after_s);
  X509_set_pubkey(cert.get(), subject_key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  if (ca) {
    add_extension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_extension(cert.get(), signer, NID_basic_constraints, "CA:FALSE");
    add_extension(cert.get(), signer, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    add_extension(cert.get(), signer, NID_ext_key_usage, "serverAuth");
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) == 0)
    throw std::runtime_error("X509_sign failed");
  return cert;
}

inline void write_cert(const std::string& path, X509* cert) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) throw std::runtime_error("cannot write " + path);
  PEM_write_X509(f, cert);
  std::fclose(f);
}

inline void write_key(const std::string& path, EVP_PKEY* key) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) throw std::runtime_error("cannot write " + path);
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
}

// The files, in a temp dir removed with the object.
struct TestCerts {
  TestCerts() {
    char pattern[] = "/tmp/micro-tls-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir = pattern;
    const long day = 24 * 3600;
    Key ca_key = new_key();
    Cert ca_cert = new_cert("micro test CA", ca_key.get(), nullptr, ca_key.get(), true, -day,
                            30 * day, 1);
    Key server_key = new_key();
    Cert server_cert = new_cert("localhost", server_key.get(), ca_cert.get(), ca_key.get(), false,
                                -day, 30 * day, 2);
    Cert expired_cert = new_cert("localhost", server_key.get(), ca_cert.get(), ca_key.get(),
                                 false, -3 * day, -day, 3);
    Key other_key = new_key();
    Cert other_ca = new_cert("some other CA", other_key.get(), nullptr, other_key.get(), true,
                             -day, 30 * day, 4);
    ca = dir + "/ca.pem";
    cert = dir + "/server.pem";
    key = dir + "/server.key";
    expired = dir + "/expired.pem";
    other = dir + "/other-ca.pem";
    write_cert(ca, ca_cert.get());
    write_cert(cert, server_cert.get());
    write_key(key, server_key.get());
    write_cert(expired, expired_cert.get());
    write_cert(other, other_ca.get());
  }
  ~TestCerts() {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  std::string dir, ca, cert, key, expired, other;
};

}  // namespace micro::testing::tls
