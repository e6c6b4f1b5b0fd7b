/* gSOAP interface (soapcpp2 input) for the XDS.b Document Repository client used by
 * tests/test_xds_independent_client.py: ITI-41 (MTOM request) and ITI-43 (MTOM response), SOAP 1.2 with
 * WS-Addressing. Written for this project from the IHE schema XDS.b_DocumentRepository.xsd and ebRS rs.xsd;
 * the ebRIM metadata of ITI-41 travels as literal XML (_XML), every other element is typed. */

#import "xop.h"
#import "xmime5.h"
#import "wsa5.h"

//gsoap xds schema namespace: urn:ihe:iti:xds-b:2007
//gsoap xds schema elementForm: qualified
//gsoap xds schema attributeForm: unqualified
//gsoap rs schema namespace: urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0
//gsoap rs schema elementForm: qualified
//gsoap rs schema attributeForm: unqualified

//gsoap repo service name: DocumentRepository
//gsoap repo service protocol: SOAP1.2
//gsoap repo service style: document
//gsoap repo service encoding: literal
//gsoap repo service namespace: urn:ihe-engine:independent-client:repository

//gsoap repo service method-action: ProvideAndRegister urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b
//gsoap repo service method-output-action: ProvideAndRegister urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse
//gsoap repo service method-header-part: ProvideAndRegister wsa5__MessageID
//gsoap repo service method-header-part: ProvideAndRegister wsa5__RelatesTo
//gsoap repo service method-header-part: ProvideAndRegister wsa5__ReplyTo
//gsoap repo service method-header-part: ProvideAndRegister wsa5__To
//gsoap repo service method-header-part: ProvideAndRegister wsa5__Action

//gsoap repo service method-action: Retrieve urn:ihe:iti:2007:RetrieveDocumentSet
//gsoap repo service method-output-action: Retrieve urn:ihe:iti:2007:RetrieveDocumentSetResponse
//gsoap repo service method-header-part: Retrieve wsa5__MessageID
//gsoap repo service method-header-part: Retrieve wsa5__RelatesTo
//gsoap repo service method-header-part: Retrieve wsa5__ReplyTo
//gsoap repo service method-header-part: Retrieve wsa5__To
//gsoap repo service method-header-part: Retrieve wsa5__Action

struct rs__RegistryError
{   char *__item;
    @char *errorCode;
    @char *codeContext;
    @char *severity;
    @char *location;
};

struct rs__RegistryErrorList
{   @char *highestSeverity;
    int __sizeRegistryError;
    struct rs__RegistryError *rs__RegistryError;
};

struct _rs__RegistryResponse
{   @char *status;
    @char *requestId;
    struct rs__RegistryErrorList *rs__RegistryErrorList;
};

/* xds:Document of ITI-41: the bytes as an MTOM part (xop:Include), the id of its ExtrinsicObject. */
struct xds__DocumentContent
{   _xop__Include xop__Include;
    @char *id;
};

struct _xds__ProvideAndRegisterDocumentSetRequest
{   _XML __any;  /* the whole lcm:SubmitObjectsRequest element, written as given */
    int __sizeDocument;
    struct xds__DocumentContent *xds__Document;
};

struct xds__DocumentRequest
{   char *xds__HomeCommunityId;
    char *xds__RepositoryUniqueId;
    char *xds__DocumentUniqueId;
};

struct _xds__RetrieveDocumentSetRequest
{   int __sizeDocumentRequest;
    struct xds__DocumentRequest *xds__DocumentRequest;
};

struct xds__DocumentResponse
{   char *xds__HomeCommunityId;
    char *xds__RepositoryUniqueId;
    char *xds__DocumentUniqueId;
    char *xds__NewRepositoryUniqueId;
    char *xds__NewDocumentUniqueId;
    char *xds__mimeType;
    struct xds__DocumentContent xds__Document;  /* no id attribute in ITI-43 answers */
};

struct _xds__RetrieveDocumentSetResponse
{   struct _rs__RegistryResponse *rs__RegistryResponse;
    int __sizeDocumentResponse;
    struct xds__DocumentResponse *xds__DocumentResponse;
};

int __repo__ProvideAndRegister(
    struct _xds__ProvideAndRegisterDocumentSetRequest *xds__ProvideAndRegisterDocumentSetRequest,
    struct _rs__RegistryResponse *rs__RegistryResponse);

int __repo__Retrieve(
    struct _xds__RetrieveDocumentSetRequest *xds__RetrieveDocumentSetRequest,
    struct _xds__RetrieveDocumentSetResponse *xds__RetrieveDocumentSetResponse);
