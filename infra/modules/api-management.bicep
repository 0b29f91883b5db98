// API Management in front of the Function App. The API is imported from a checked-in copy of the
// app's own OpenAPI document (infra/apim/openapi.json, regenerated with `python -m api.openapi`;
// tests/infra fails when it drifts), because an import from the live /api/openapi.json link would
// fail on the first `azd up`: provisioning runs before the code is deployed.
// Policy (infra/apim/policy.xml): Entra token validation, a per-caller rate limit keyed by the
// token's oid claim (not on Consumption, which lacks rate-limit-by-key), then the Function App.

@description('Required. Name of the API Management service (globally unique).')
param name string

@description('Optional. Location of the service.')
param location string = resourceGroup().location

@description('Optional. Tags applied to the service.')
param tags object = {}

@description('Optional. Pricing tier. Consumption does not support rate-limit-by-key, so the per-caller limit is left out there (the app\'s own TRAWL_RATE_* quotas still apply).')
@allowed([
  'Consumption'
  'Developer'
  'BasicV2'
  'StandardV2'
  'Basic'
  'Standard'
  'Premium'
])
param skuName string = 'Developer'

@description('Required. Email address of the API publisher (receives service notifications).')
param publisherEmail string

@description('Optional. Name of the API publisher.')
param publisherName string = 'Trawl'

@description('Required. Host name of the Function App, e.g. func-trawl-abc.azurewebsites.net.')
param functionAppHostName string

@description('Required. Entra tenant whose tokens are accepted.')
param tenantId string

@description('Required. Accepted token audiences: the Trawl API app registration\'s Application ID URI and/or client id.')
@minLength(1)
param audiences array

@description('Optional. Client application ids allowed to call the API (the token\'s appid/azp); empty allows any client of the tenant.')
param clientApplicationIds array = []

@description('Optional. Calls each caller (token oid) may make per renewal period.')
@minValue(1)
param rateLimitCalls int = 60

@description('Optional. Rate-limit renewal period in seconds.')
@minValue(1)
@maxValue(300)
param rateLimitRenewalPeriod int = 60

@description('Required. Resource id of the Log Analytics workspace that receives the gateway logs.')
param logAnalyticsWorkspaceId string

var backendId = 'trawl-function-app'
var audienceElements = [for audience in audiences: '<audience>${audience}</audience>']
var clientApplicationIdElements = [for clientId in clientApplicationIds: '<application-id>${clientId}</application-id>']
var clientApplicationIdsXml = empty(clientApplicationIds) ? '' : '<client-application-ids>${join(clientApplicationIdElements, '')}</client-application-ids>'
var rateLimitXml = replace(replace(loadTextContent('../apim/rate-limit-by-oid.xml'), '__CALLS__', string(rateLimitCalls)), '__RENEWAL_PERIOD__', string(rateLimitRenewalPeriod))
var policyTemplate = loadTextContent('../apim/policy.xml')
var policyWithToken = replace(replace(replace(policyTemplate, '__TENANT_ID__', tenantId), '__AUDIENCES__', join(audienceElements, '')), '__CLIENT_APPLICATION_IDS__', clientApplicationIdsXml)
var policyXml = replace(replace(policyWithToken, '__RATE_LIMIT__', skuName == 'Consumption' ? '' : rateLimitXml), '__BACKEND_ID__', backendId)

// Old protocols and 3DES off on the gateway and towards the backend. Only the classic tiers accept
// these settings: Consumption, Basic v2 and Standard v2 refuse changes to the default protocol and
// cipher configuration (Microsoft's "Manage protocols and ciphers in Azure API Management"), and
// their defaults already leave TLS 1.0, 1.1 and SSL 3.0 off.
var tiersWithTlsSettings = [
  'Developer'
  'Basic'
  'Standard'
  'Premium'
]
var tlsHardening = {
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10': 'false'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls11': 'false'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Ssl30': 'false'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls10': 'false'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls11': 'false'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Ssl30': 'false'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Ciphers.TripleDes168': 'false'
}

resource service 'Microsoft.ApiManagement/service@2024-05-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    capacity: skuName == 'Consumption' ? 0 : 1
  }
  properties: {
    // checkov:skip=CKV_AZURE_174: API Management is the API's public entry point; callers are authenticated by validate-azure-ad-token and rate limited per caller.
    // checkov:skip=CKV_AZURE_107: The gateway is the public entry point of the API; callers are authenticated by validate-azure-ad-token, and VNet injection needs the Premium or Developer tier with a dedicated subnet.
    publisherEmail: publisherEmail
    publisherName: publisherName
    publicNetworkAccess: 'Enabled'
    customProperties: contains(tiersWithTlsSettings, skuName) ? tlsHardening : {}
  }
}

resource backend 'Microsoft.ApiManagement/service/backends@2024-05-01' = {
  parent: service
  name: backendId
  properties: {
    description: 'The Trawl Function App'
    protocol: 'http'
    url: 'https://${functionAppHostName}'
    tls: {
      validateCertificateChain: true
      validateCertificateName: true
    }
  }
}

// The document's paths already start with /api (the Functions route prefix), so the API has an
// empty URL suffix: https://<apim>.azure-api.net/api/jobs maps to https://<app>/api/jobs, and the
// app's relative links stay valid behind the gateway.
resource api 'Microsoft.ApiManagement/service/apis@2024-05-01' = {
  parent: service
  name: 'trawl'
  properties: {
    displayName: 'Trawl'
    description: 'Durable web-scraping jobs.'
    path: ''
    protocols: [
      'https'
    ]
    subscriptionRequired: false
    serviceUrl: 'https://${functionAppHostName}'
    format: 'openapi+json'
    value: loadTextContent('../apim/openapi.json')
  }
}

resource apiPolicy 'Microsoft.ApiManagement/service/apis/policies@2024-05-01' = {
  parent: api
  name: 'policy'
  properties: {
    format: 'rawxml'
    value: policyXml
  }
  dependsOn: [
    backend
  ]
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'apim-to-log-analytics'
  scope: service
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

@description('The service\'s name.')
output name string = service.name

@description('The gateway URL callers use, e.g. https://apim-trawl-abc.azure-api.net.')
output gatewayUrl string = service.properties.gatewayUrl
