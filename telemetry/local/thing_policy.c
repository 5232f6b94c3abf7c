/*
 * thing_policy: a mosquitto 2.0 plugin that makes the device listener decide as
 * AWS IoT Core does, from the template's DevicePolicy translated to ACL lines.
 *
 * - CONNECT: the client id must be the thing named by the certificate's CN (the
 *   certificate the local CA issued to that thing, i.e. the thing it is attached
 *   to). Anything else is refused in the CONNACK ("Not authorized").
 * - PUBLISH: payloads over the limit (IoT Core's 128 KB) and topics over IoT
 *   Core's 256 bytes or 7 slashes are refused, and so is a topic no `write` line
 *   allows, by closing the connection before any PUBACK: mosquitto's own ACL
 *   would acknowledge a refused QoS 1 publish to an MQTT 3.1.1 client, which IoT
 *   Core never does.
 * - SUBSCRIBE: the filter must be allowed by a `read` line, read as IoT reads its
 *   topicfilter resources: level by level, text against text; a `+` line level
 *   stands for any one level and `#` for any number (the translation writes
 *   `+/#` for IAM's trailing slash-star). Refused: SUBACK failure.
 * - Receive: each message delivered must be allowed by a `read` line.
 *
 * ACL lines are mosquitto's `pattern <read|write|readwrite> <topic>`, with %c
 * standing for the client id (which CONNECT made the thing name). Each refusal
 * is logged as `thing-policy: refused <client> <action> <target>: <reason>`, and
 * each disconnect of a client it let in as `thing-policy: gone <client>`, for the
 * stack to read (its refusals, and IoT Core's lifecycle events).
 *
 * - Each accepted message carries the publisher's client id as the MQTT 5 user
 *   property `iot-client-id` (last of that name), for the rules engine's
 *   clientid() and error action: MQTT itself does not tell a subscriber.
 *
 * - Every retained PUBLISH is refused likewise: the translation of the policy
 *   refuses a statement allowing iot:RetainPublish (broker_policy.py), so no
 *   device may retain, as the template's policy has it.
 *
 * Options: plugin_opt_acl_file, plugin_opt_arn_prefix, plugin_opt_max_payload.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/objects.h>
#include <openssl/x509.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define MAX_LINES 256
#define MAX_TOPIC_BYTES 256
#define MAX_TOPIC_SLASHES 7

struct line {
	bool read;
	bool write;
	char *pattern;
};

static mosquitto_plugin_id_t *plugin_id;
static struct line lines[MAX_LINES];
static int line_count;
static char arn_prefix[256] = "";
static unsigned long max_payload = 131072;

static void refused(const char *client, const char *action, const char *kind,
		const char *target, const char *reason)
{
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "thing-policy: refused %s %s %s%s: %s",
			client ? client : "<unknown>", action, kind, target, reason);
}

/* Whether `text` (a topic, or a filter read as text) is allowed by `pattern`
 * once %c is `client`. Level by level; `+` any one level, `#` any number. */
static bool matches(const char *pattern, const char *client, const char *text)
{
	const char *p = pattern;
	const char *t = text;
	size_t client_len = strlen(client);

	while(true){
		const char *p_end = strchr(p, '/');
		const char *t_end = strchr(t, '/');
		size_t p_len = p_end ? (size_t)(p_end - p) : strlen(p);
		size_t t_len = t_end ? (size_t)(t_end - t) : strlen(t);

		if(p_len == 1 && p[0] == '#' && !p_end){
			return true;
		}
		if(!(p_len == 1 && p[0] == '+')){
			/* literal level, %c substituted */
			const char *a = p;
			const char *a_end = p + p_len;
			const char *b = t;
			const char *b_end = t + t_len;
			while(a < a_end){
				if(a + 1 < a_end && a[0] == '%' && a[1] == 'c'){
					if((size_t)(b_end - b) < client_len || strncmp(b, client, client_len)){
						return false;
					}
					b += client_len;
					a += 2;
				}else{
					if(b >= b_end || *a != *b) return false;
					a++;
					b++;
				}
			}
			if(b != b_end) return false;
		}
		if(!p_end && !t_end) return true;
		if(!p_end){
			return false;
		}
		if(!t_end){
			/* the text ends: only a final "#" level matches nothing more */
			return strcmp(p_end + 1, "#") == 0;
		}
		p = p_end + 1;
		t = t_end + 1;
	}
}

static bool allowed(bool write, const char *client, const char *text)
{
	for(int i = 0; i < line_count; i++){
		if((write ? lines[i].write : lines[i].read) && matches(lines[i].pattern, client, text)){
			return true;
		}
	}
	return false;
}

static const char *limited_topic(const char *topic)
{
	/* Basic Ingest: IoT Core's topic limits do not count `$aws/rules/<rule>/`. */
	if(!strncmp(topic, "$aws/rules/", 11)){
		const char *after = strchr(topic + 11, '/');
		if(after) return after + 1;
	}
	return topic;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *client = mosquitto_client_id(ed->client);
	X509 *cert = mosquitto_client_certificate(ed->client);
	char cn[256] = "";
	char reason[512];
	(void)event;
	(void)userdata;

	if(cert){
		X509_NAME *subject = X509_get_subject_name(cert);
		if(X509_NAME_get_text_by_NID(subject, NID_commonName, cn, sizeof(cn)) < 0){
			cn[0] = '\0';
		}
		X509_free(cert);
	}
	if(!client || !cn[0]){
		refused(client, "iot:Connect", "client/", client ? client : "", "no thing certificate");
		return MOSQ_ERR_AUTH;
	}
	if(strcmp(client, cn)){
		snprintf(reason, sizeof(reason),
				"the certificate is attached to %s, not to %s (the client id must be the thing name)",
				cn, client);
		refused(client, "iot:Connect", "client/", client, reason);
		return MOSQ_ERR_AUTH;
	}
	return MOSQ_ERR_SUCCESS;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *client = mosquitto_client_id(ed->client);
	char reason[512];
	(void)event;
	(void)userdata;

	if(!client || strpbrk(client, "+#/")) return MOSQ_ERR_ACL_DENIED;
	switch(ed->access){
		case MOSQ_ACL_WRITE: {
			const char *inner = limited_topic(ed->topic);
			int slashes = 0;
			for(const char *c = inner; *c; c++) slashes += *c == '/';
			if(ed->payloadlen > max_payload){
				snprintf(reason, sizeof(reason), "payload of %lu bytes is over IoT Core's 128 KB",
						(unsigned long)ed->payloadlen);
				refused(client, "iot:Publish", "topic/", ed->topic, reason);
				return MOSQ_ERR_PAYLOAD_SIZE;
			}
			if(strlen(inner) > MAX_TOPIC_BYTES || slashes > MAX_TOPIC_SLASHES){
				refused(client, "iot:Publish", "topic/", ed->topic,
						"topic is over IoT Core's 256 bytes or 7 slashes");
				return MOSQ_ERR_AUTH;
			}
			if(!allowed(true, client, ed->topic)){
				snprintf(reason, sizeof(reason), "no statement allows iot:Publish on %stopic/%s",
						arn_prefix, ed->topic);
				refused(client, "iot:Publish", "topic/", ed->topic, reason);
				return MOSQ_ERR_AUTH;
			}
			if(ed->retain){
				snprintf(reason, sizeof(reason), "no statement allows iot:RetainPublish on %stopic/%s",
						arn_prefix, ed->topic);
				refused(client, "iot:RetainPublish", "topic/", ed->topic, reason);
				return MOSQ_ERR_AUTH;
			}
			return MOSQ_ERR_SUCCESS;
		}
		case MOSQ_ACL_SUBSCRIBE:
			if(!allowed(false, client, ed->topic)){
				snprintf(reason, sizeof(reason), "no statement allows iot:Subscribe on %stopicfilter/%s",
						arn_prefix, ed->topic);
				refused(client, "iot:Subscribe", "topicfilter/", ed->topic, reason);
				return MOSQ_ERR_ACL_DENIED;
			}
			return MOSQ_ERR_SUCCESS;
		case MOSQ_ACL_READ:
			return allowed(false, client, ed->topic) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
		default:
			return MOSQ_ERR_SUCCESS;
	}
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	const char *client = mosquitto_client_id(ed->client);
	(void)event;
	(void)userdata;
	if(client){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "thing-policy: gone %s", client);
	}
	return MOSQ_ERR_SUCCESS;
}

static int on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ed = event_data;
	const char *client = mosquitto_client_id(ed->client);
	(void)event;
	(void)userdata;
	if(client){
		return mosquitto_property_add_string_pair(&ed->properties, MQTT_PROP_USER_PROPERTY,
				"iot-client-id", client);
	}
	return MOSQ_ERR_SUCCESS;
}

static int read_acl(const char *path)
{
	char buf[1024];
	FILE *f = fopen(path, "r");
	if(!f){
		mosquitto_log_printf(MOSQ_LOG_ERR, "thing-policy: cannot read %s", path);
		return MOSQ_ERR_INVAL;
	}
	while(fgets(buf, sizeof(buf), f)){
		char access[16];
		char pattern[1000];
		buf[strcspn(buf, "\r\n")] = '\0';
		if(buf[0] == '#' || buf[0] == '\0') continue;
		if(sscanf(buf, "pattern %15s %999s", access, pattern) != 2 || line_count == MAX_LINES){
			mosquitto_log_printf(MOSQ_LOG_ERR, "thing-policy: %s: cannot read line '%s'", path, buf);
			fclose(f);
			return MOSQ_ERR_INVAL;
		}
		lines[line_count].read = !strcmp(access, "read") || !strcmp(access, "readwrite");
		lines[line_count].write = !strcmp(access, "write") || !strcmp(access, "readwrite");
		if(!lines[line_count].read && !lines[line_count].write){
			mosquitto_log_printf(MOSQ_LOG_ERR, "thing-policy: %s: unknown access '%s'", path, access);
			fclose(f);
			return MOSQ_ERR_INVAL;
		}
		lines[line_count].pattern = strdup(pattern);
		line_count++;
	}
	fclose(f);
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **user_data,
		struct mosquitto_opt *opts, int opt_count)
{
	const char *acl_file = NULL;
	int rc;
	(void)user_data;

	plugin_id = identifier;
	for(int i = 0; i < opt_count; i++){
		if(!strcmp(opts[i].key, "acl_file")){
			acl_file = opts[i].value;
		}else if(!strcmp(opts[i].key, "arn_prefix")){
			snprintf(arn_prefix, sizeof(arn_prefix), "%s", opts[i].value);
		}else if(!strcmp(opts[i].key, "max_payload")){
			max_payload = strtoul(opts[i].value, NULL, 10);
		}
	}
	if(!acl_file){
		mosquitto_log_printf(MOSQ_LOG_ERR, "thing-policy: plugin_opt_acl_file is required");
		return MOSQ_ERR_INVAL;
	}
	rc = read_acl(acl_file);
	if(rc) return rc;
	rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
	if(!rc) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	if(!rc) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, NULL);
	if(!rc) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL, NULL);
	return rc;
}

int mosquitto_plugin_cleanup(void *user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data;
	(void)opts;
	(void)opt_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL);
	for(int i = 0; i < line_count; i++) free(lines[i].pattern);
	line_count = 0;
	return MOSQ_ERR_SUCCESS;
}
