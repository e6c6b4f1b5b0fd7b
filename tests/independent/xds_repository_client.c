/* An XDS.b Document Source / Consumer built on gSOAP, to prove the engine's repository works with a SOAP stack
 * this project did not write (issue 3, "An independent client").
 *
 *   xds_repository_client URL iti41 METADATA.xml ENTRY_ID=FILE=MIMETYPE ...
 *       sends ITI-41 in MTOM: the lcm:SubmitObjectsRequest from METADATA.xml, each FILE as an xop:Include part
 *   xds_repository_client URL iti43 REPOSITORY_ID DOCUMENT_UNIQUE_ID OUT_DIR
 *       sends ITI-43 and writes each returned document to OUT_DIR/<n>.bin
 *
 * Prints one JSON object on stdout: {"status": ..., "errors": [...], ...} or {"fault": ..., "error": N}. */

#include "soapH.h"
#include "DocumentRepository.nsmap"
#include "wsaapi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_file(struct soap *soap, const char *path, int *size)
{   FILE *file = fopen(path, "rb");
    long length;
    char *data;
    if (!file)
        return NULL;
    fseek(file, 0, SEEK_END);
    length = ftell(file);
    fseek(file, 0, SEEK_SET);
    data = (char *)soap_malloc(soap, length + 1);
    if (fread(data, 1, length, file) != (size_t)length)
        length = 0;
    data[length] = '\0';
    fclose(file);
    *size = (int)length;
    return data;
}

static void print_json_string(const char *text)
{   putchar('"');
    for (; text && *text; text++)
    {   if (*text == '"' || *text == '\\')
            printf("\\%c", *text);
        else if ((unsigned char)*text < 0x20)
            printf("\\u%04x", *text);
        else
            putchar(*text);
    }
    putchar('"');
}

static void print_registry_response(struct _rs__RegistryResponse *response)
{   int i;
    printf("\"status\": ");
    print_json_string(response && response->status ? response->status : "");
    printf(", \"errors\": [");
    if (response && response->rs__RegistryErrorList)
        for (i = 0; i < response->rs__RegistryErrorList->__sizeRegistryError; i++)
        {   printf(i ? ", " : "");
            print_json_string(response->rs__RegistryErrorList->rs__RegistryError[i].errorCode);
        }
    printf("]");
}

static int fail(struct soap *soap)
{   const char **reason = soap_faultstring(soap);
    printf("{\"fault\": ");
    print_json_string(reason && *reason ? *reason : "transport error");
    printf(", \"error\": %d}\n", soap->error);
    return 1;
}

/* WS-Addressing: Action, MessageID, To and an anonymous ReplyTo, as IHE requires (gSOAP's wsa plugin). */
static void address(struct soap *soap, const char *url, const char *action)
{   soap_wsa_request(soap, soap_wsa_rand_uuid(soap), url, action);
    soap_wsa_add_ReplyTo(soap, "http://www.w3.org/2005/08/addressing/anonymous");
}

static int provide_and_register(struct soap *soap, const char *url, int argc, char **argv)
{   struct _xds__ProvideAndRegisterDocumentSetRequest request;
    struct _rs__RegistryResponse response;
    int i, size;
    memset(&request, 0, sizeof(request));
    request.__any = read_file(soap, argv[0], &size);
    if (!request.__any)
    {   fprintf(stderr, "cannot read %s\n", argv[0]);
        return 2;
    }
    request.__sizeDocument = argc - 1;
    request.xds__Document = (struct xds__DocumentContent *)soap_malloc(
        soap, sizeof(struct xds__DocumentContent) * (argc - 1));
    for (i = 1; i < argc; i++)  /* ENTRY_ID=FILE=MIMETYPE */
    {   struct xds__DocumentContent *document = &request.xds__Document[i - 1];
        char *spec = soap_strdup(soap, argv[i]);
        char *file = strchr(spec, '='), *mime;
        memset(document, 0, sizeof(*document));
        if (!file || !(mime = strchr(file + 1, '=')))
        {   fprintf(stderr, "bad document argument %s\n", argv[i]);
            return 2;
        }
        *file++ = '\0';
        *mime++ = '\0';
        document->id = spec;
        document->xop__Include.__ptr = (unsigned char *)read_file(soap, file, &document->xop__Include.__size);
        document->xop__Include.type = mime;
        if (!document->xop__Include.__ptr)
        {   fprintf(stderr, "cannot read %s\n", file);
            return 2;
        }
    }
    address(soap, url, "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b");
    if (soap_call___repo__ProvideAndRegister(soap, url, NULL, &request, &response) != SOAP_OK)
        return fail(soap);
    printf("{");
    print_registry_response(&response);
    printf("}\n");
    return 0;
}

static int retrieve(struct soap *soap, const char *url, int argc, char **argv)
{   struct _xds__RetrieveDocumentSetRequest request;
    struct _xds__RetrieveDocumentSetResponse response;
    struct xds__DocumentRequest item;
    int i;
    if (argc < 3)
        return 2;
    memset(&request, 0, sizeof(request));
    memset(&item, 0, sizeof(item));
    item.xds__RepositoryUniqueId = argv[0];
    item.xds__DocumentUniqueId = argv[1];
    request.__sizeDocumentRequest = 1;
    request.xds__DocumentRequest = &item;
    address(soap, url, "urn:ihe:iti:2007:RetrieveDocumentSet");
    if (soap_call___repo__Retrieve(soap, url, NULL, &request, &response) != SOAP_OK)
        return fail(soap);
    printf("{");
    print_registry_response(response.rs__RegistryResponse);
    printf(", \"documents\": [");
    for (i = 0; i < response.__sizeDocumentResponse; i++)
    {   struct xds__DocumentResponse *document = &response.xds__DocumentResponse[i];
        char path[4096];
        FILE *out;
        snprintf(path, sizeof(path), "%s/%d.bin", argv[2], i);
        out = fopen(path, "wb");
        if (out)
        {   fwrite(document->xds__Document.xop__Include.__ptr, 1, document->xds__Document.xop__Include.__size, out);
            fclose(out);
        }
        printf(i ? ", {" : "{");
        printf("\"uniqueId\": ");
        print_json_string(document->xds__DocumentUniqueId);
        printf(", \"mimeType\": ");
        print_json_string(document->xds__mimeType);
        printf(", \"size\": %d, \"file\": ", document->xds__Document.xop__Include.__size);
        print_json_string(path);
        printf("}");
    }
    printf("]}\n");
    return 0;
}

int main(int argc, char **argv)
{   struct soap *soap;
    int result;
    if (argc < 4)
    {   fprintf(stderr, "usage: %s URL iti41 METADATA ID=FILE=MIME... | URL iti43 REPOSITORY_ID DOCUMENT_ID OUT_DIR\n",
                argv[0]);
        return 2;
    }
    soap = soap_new1(SOAP_ENC_MTOM);
    soap->send_timeout = soap->recv_timeout = 120;
    soap_register_plugin(soap, soap_wsa);
    if (!strcmp(argv[2], "iti41"))
        result = provide_and_register(soap, argv[1], argc - 3, argv + 3);
    else if (!strcmp(argv[2], "iti43"))
        result = retrieve(soap, argv[1], argc - 3, argv + 3);
    else
        result = 2;
    soap_destroy(soap);
    soap_end(soap);
    soap_free(soap);
    return result;
}
